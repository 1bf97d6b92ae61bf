"""`Generator` on vLLM, whose own automatic prefix caching does the KV reuse.

vLLM is imported only when a `VLLMGenerator` is made, so this module (and its pure helpers below, which the tests
check without vLLM) imports anywhere. Not run in this repository's CI (no GPU, no vLLM): it follows vLLM's public
API (`LLM(..., enable_prefix_caching=True)`, token-id prompts, `SamplingParams(n=...)`) as documented.

How the contract maps onto vLLM:

- Requests are submitted in depth-first order of their prefixes (`depth_first_order`), so siblings and a parent's
  children sit next to each other in the batch and hit vLLM's prefix cache while their blocks are still there.
- vLLM cannot run the step scanner inside its decode loop, so a child that should stop at a step boundary is
  generated up to `max_new_tokens` and cut afterwards at the token that completes the step (`cut_at_step`, the
  same rule as the transformers backend). Sampling is causal, so the cut child is a sample of the same
  distribution; the tokens after the cut are wasted work, bounded by `max_new_tokens`.
- `Child.logprobs` come from `SamplingParams(logprobs=1)`: vLLM's default log-probs are those of the model's raw
  distribution (before temperature and top-p), as in the transformers backend.
- Prefill reuse is read from `RequestOutput.num_cached_tokens` where the vLLM version reports it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from rftfast import distributed
from rftfast.answer import cut_at_step
from rftfast.data.chat import END
from rftfast.generation.base import Child, ExpandRequest, GenerationStats
from rftfast.generation.prefix_cache import depth_first_order

if TYPE_CHECKING:
    from vllm import CompletionOutput


def sampling_params_kwargs(request: ExpandRequest, stop_token_ids: Sequence[int] = ()) -> dict:
    """The `vllm.SamplingParams` arguments for one request.

    Step boundaries are not vLLM stop strings (a "," inside a string argument is not one), so `stop` holds only
    the end-of-answer marker; the cut at a step happens afterwards (`cut_at_step`).
    """
    return dict(
        n=request.n,
        temperature=request.temperature,
        top_p=request.top_p,
        max_tokens=request.max_new_tokens,
        stop=[END],
        stop_token_ids=sorted(stop_token_ids),
        logprobs=1,
        seed=request.seed,
        skip_special_tokens=True,
    )


def child_from_completion(
    token_ids: Sequence[int],
    logprobs: Sequence[float],
    finish_reason: str,
    request: ExpandRequest,
    decode: Callable[[Sequence[int]], str],
    answer_so_far: str = "",
) -> Child:
    """A `Child` from one vLLM completion: cut at the first step when the request stops at steps."""
    token_ids, logprobs = list(token_ids), list(logprobs)
    cut = cut_at_step(token_ids, decode, answer_so_far, request.call_format) if request.stop_at_step else None
    # A step completed by the completion's very last token keeps a "stop" (end of answer) reason.
    if cut is not None and (cut < len(token_ids) or finish_reason != "stop"):
        token_ids, logprobs, finish_reason = token_ids[:cut], logprobs[:cut], "step"
    reason = finish_reason if finish_reason in ("stop", "step") else "length"  # vLLM also reports "abort"
    return Child(token_ids, decode(token_ids), logprobs, reason)


def sampled_logprobs(completion: CompletionOutput) -> list[float]:
    """The log-prob of each sampled token of a vLLM `CompletionOutput` (requested with logprobs >= 0)."""
    if completion.logprobs is None:
        return [0.0] * len(completion.token_ids)
    return [float(step[token].logprob) for token, step in zip(completion.token_ids, completion.logprobs)]


class VLLMGenerator:
    """`Generator` backed by `vllm.LLM` with automatic prefix caching; extra keyword arguments go to `LLM`.

    Under `torchrun` (WORLD_SIZE > 1) every process builds its own engine with vLLM's
    `distributed_executor_backend="external_launcher"`: the world is `tensor_parallel_size ×
    data_parallel_size` processes, each tensor-parallel group is one replica, and `data_parallel`
    says which share of the work this replica takes. `close` shuts the engine down and frees its GPU
    memory, so that training (or the next checkpoint's engine) gets it back.
    """

    def __init__(
        self,
        model_path: str,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        data_parallel_size: int = 1,
        seed: int = 0,
        **llm_kwargs: Any,
    ) -> None:
        from vllm import LLM  # imported here: vLLM is an optional dependency

        if distributed.launched():
            llm_kwargs.setdefault("distributed_executor_backend", "external_launcher")
        # An explicit seed keeps the ranks of one tensor-parallel group sampling the same tokens.
        self.llm = LLM(
            model=model_path,
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_prefix_caching=True,
            seed=seed,
            **llm_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        vocab = self.tokenizer.get_vocab()
        self.stop_token_ids = {i for i in (self.tokenizer.eos_token_id, vocab.get(END)) if i is not None}
        self.stats = GenerationStats()

    @property
    def data_parallel(self) -> tuple[int, int]:
        """(this replica's data-parallel rank, the number of replicas)."""
        config = self._engine().llm_engine.vllm_config.parallel_config
        return config.data_parallel_rank, config.data_parallel_size

    def close(self) -> None:
        """Drop the engine and return its GPU memory; idempotent."""
        if self.llm is None:
            return
        import gc

        import torch

        self.llm = None
        gc.collect()  # the engine's tensors are freed only once nothing refers to them
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _engine(self):
        if self.llm is None:
            raise RuntimeError("VLLMGenerator: closed (close() shut its engine down)")
        return self.llm

    def _decode(self, token_ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def expand(self, requests: Sequence[ExpandRequest]) -> list[list[Child]]:
        from vllm import SamplingParams

        started = time.perf_counter()
        order = depth_first_order([r.prefix_ids for r in requests])
        prompts = [{"prompt_token_ids": list(requests[i].prefix_ids)} for i in order]
        params = [SamplingParams(**sampling_params_kwargs(requests[i], self.stop_token_ids)) for i in order]
        outputs = self._engine().generate(prompts, params, use_tqdm=False)
        children: list[list[Child]] = [[] for _ in requests]
        for i, output in zip(order, outputs):
            request = requests[i]
            answer_so_far = ""
            if request.stop_at_step and request.answer_start is not None:
                answer_so_far = self._decode(request.prefix_ids[request.answer_start :])
            children[i] = [
                child_from_completion(
                    c.token_ids, sampled_logprobs(c), c.finish_reason or "length", request, self._decode, answer_so_far
                )
                for c in output.outputs
            ]
            cached = getattr(output, "num_cached_tokens", None) or 0
            self.stats.prefill_reused += cached
            self.stats.prefill_computed += len(request.prefix_ids) - cached
            self.stats.generated += sum(len(c.token_ids) for c in output.outputs)
        self.stats.calls += 1
        self.stats.seconds += time.perf_counter() - started
        return children

    def logprobs(self, prefix_ids: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        """Teacher-forced log-probs through vLLM's prompt log-probs of prefix + continuation."""
        from vllm import SamplingParams

        prefix = list(prefix_ids)
        rows = [i for i, c in enumerate(continuations) if len(c)]
        out: list[list[float]] = [[] for _ in continuations]
        if not rows:
            return out
        prompts = [{"prompt_token_ids": prefix + list(continuations[i])} for i in rows]
        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0)
        for i, output in zip(rows, self._engine().generate(prompts, params, use_tqdm=False)):
            tokens = list(continuations[i])
            steps = output.prompt_logprobs[len(prefix) :]
            out[i] = [float(step[token].logprob) for token, step in zip(tokens, steps)]
        return out
