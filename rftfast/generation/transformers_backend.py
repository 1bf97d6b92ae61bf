"""`Generator` on a transformers causal LM, reusing prefix KV through the radix prefix cache.

Per request: the prefix is matched in the cache, the model's cache is built from the matched blocks of the KV
pool, only the unmatched suffix is prefilled, and the `n` children decode as one batch (the prefix KV repeated
`n` times). The prefix's new KV goes back into the pool, and so does each child's (its prefix plus all but its
last token, the ones whose KV exists), so expanding a child later prefills a single token. Requests are served
in depth-first order of their prefixes, so a parent is cached before its children and siblings follow each other.

Sampling: temperature 0 is greedy (argmax); otherwise softmax(logits / temperature) restricted to the top-p
nucleus, drawn from a `torch.Generator` seeded with the request's seed (fresh entropy when the seed is None).
`Child.logprobs` are the log-probs of the drawn tokens under the model's own distribution (temperature 1, no
top-p), the quantity the search and the judge compare across children.

A child stops at the end of an answer step in the request's call format (`stop_at_step`, `call_format`, see
`rftfast.answer.StepScanner`; finish "step"), at EOS or the `<|end|>` token (finish "stop"; the token is kept in
`token_ids`, not in `text`), or after `max_new_tokens` (finish "length"). `text` is the decoded child without
special tokens.

Prefix reuse needs a model whose cache is a plain (full attention) `DynamicCache`; sliding-window and hybrid
models are refused. Outputs with and without reuse agree wherever the model computes the same logits for the
same tokens: exactly in float64, and up to float rounding otherwise (a reused prefix's KV was computed in a
different forward pass, whose matrix shapes differ).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from rftfast import distributed
from rftfast.answer import StepScanner
from rftfast.data.chat import END
from rftfast.generation.base import Child, ExpandRequest, GenerationStats
from rftfast.generation.kv_pool import KVPool, LayerKV
from rftfast.generation.prefix_cache import PrefixCache, as_token_array, depth_first_order

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def sample_tokens(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """One token per row of `logits` [rows, vocab]: argmax when temperature == 0, else nucleus sampling."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest set of most likely tokens whose mass reaches top_p (always at least the first).
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs >= top_p
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@dataclass
class _Row:
    """A child being decoded."""

    scanner: StepScanner | None
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    fed_chars: int = 0  # characters of the decoded text already given to the scanner
    finish_reason: str | None = None


class TransformersGenerator:
    """`Generator` over a transformers causal LM (any device), with prefix KV reuse when `prefix_cache`.

    `num_blocks` x `block_size` positions of KV are kept for reuse (the pool is allocated on first use, shaped
    like the model's KV); `cache_backend` picks the C++ tree or the Python reference; `cache_children` also
    stores each child's KV for its own later expansion. `stop_token_ids` defaults to the tokenizer's EOS and
    `<|end|>`. Under `torchrun` every process holds the model and serves its own share (`data_parallel`).
    `close` frees the KV pool; the model is the caller's and stays as it is.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        prefix_cache: bool = True,
        *,
        num_blocks: int = 4096,
        block_size: int = 16,
        cache_backend: str = "cpp",
        cache_children: bool = True,
        stop_token_ids: Sequence[int] | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.stats = GenerationStats()
        self.stop_token_ids = set(stop_token_ids) if stop_token_ids is not None else _default_stop_ids(tokenizer)
        self.cache = PrefixCache(num_blocks, block_size, cache_backend) if prefix_cache else None
        self.cache_children = cache_children and prefix_cache
        self.pool: KVPool | None = None  # made on the first store, once the KV's shapes are known
        forward_params = inspect.signature(model.forward).parameters
        self._logits_to_keep = "logits_to_keep" in forward_params
        # transformers >= 5.2x names the KV cache argument `cache` (`past_key_values` goes in 5.40); older
        # releases know only `past_key_values`
        self._cache_arg = "cache" if "cache" in forward_params else "past_key_values"
        self.closed = False
        if prefix_cache:
            _check_cacheable(model)

    # -- the Generator protocol --------------------------------------------------------------------------------

    @property
    def data_parallel(self) -> tuple[int, int]:
        """(rank, world size): one replica per process."""
        return distributed.rank(), distributed.world_size()

    def close(self) -> None:
        """Drop the KV pool and the cached prefixes (the model stays); idempotent."""
        self.cache = self.pool = None
        self.closed = True

    @torch.inference_mode()
    def expand(self, requests: Sequence[ExpandRequest]) -> list[list[Child]]:
        """Per request, `request.n` children, in request order (served in depth-first order of the prefixes)."""
        self._check_open()
        started = time.perf_counter()
        children: list[list[Child]] = [[] for _ in requests]
        for i in depth_first_order([r.prefix_ids for r in requests]):
            children[i] = self._expand_one(requests[i])
        self.stats.calls += 1
        self.stats.seconds += time.perf_counter() - started
        self._record_cache_stats()
        return children

    @torch.inference_mode()
    def logprobs(self, prefix_ids: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        """Teacher-forced per-token log-probs (temperature 1) of each continuation after `prefix_ids`."""
        self._check_open()
        started = time.perf_counter()
        prefix = _check_prefix(prefix_ids)
        continuations = [[int(t) for t in c] for c in continuations]
        logits, past, node = self._prefill(prefix)
        try:
            out = self._score(logits, past, continuations)
        finally:
            if node is not None:
                self.cache.unlock(node)
        self.stats.calls += 1
        self.stats.seconds += time.perf_counter() - started
        self.stats.extra["scored_tokens"] = self.stats.extra.get("scored_tokens", 0) + sum(map(len, continuations))
        self._record_cache_stats()
        return out

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("TransformersGenerator: closed (close() freed its KV pool)")

    # -- prefill with reuse ------------------------------------------------------------------------------------

    def _forward(self, token_ids: Sequence[int], past, last_only: bool):
        ids = torch.as_tensor([list(token_ids)], dtype=torch.long, device=self.device)
        kwargs = {"logits_to_keep": 1} if last_only and self._logits_to_keep else {}
        out = self._call(ids, past, **kwargs)
        return out.logits[:, -1] if last_only else out.logits, getattr(out, self._cache_arg)

    def _call(self, input_ids: torch.Tensor, past, **kwargs):
        """The model's forward over `input_ids` after the KV cache `past`, returning the grown cache."""
        return self.model(input_ids=input_ids, use_cache=True, **{self._cache_arg: past}, **kwargs)

    def _prefill(self, prefix: np.ndarray):
        """(logits after the prefix [1, vocab], model cache of its KV, locked cache node of the prefix or None)."""
        length = len(prefix)
        if self.cache is None:
            logits, past = self._forward(prefix.tolist(), None, last_only=True)
            self.stats.prefill_computed += length
            return logits, past, None

        from transformers import DynamicCache

        match = self.cache.match(prefix)
        # At least the last token goes through the model: its logits start the continuation.
        reused = min(match.matched_len, length - 1)
        past = DynamicCache(self.pool.read(match.block_ids, reused)) if reused > 0 else None
        logits, past = self._forward(prefix[reused:].tolist(), past, last_only=True)
        self.stats.prefill_computed += length - reused
        self.stats.prefill_reused += reused
        node = match.node
        if match.matched_len < length:
            node = self._store(prefix, _layer_kv(past), row=0)
        if node is not None:
            self.cache.lock(node)  # keep the prefix while its children are decoded and stored
        return logits, past, node

    def _store(self, tokens: np.ndarray, kv: LayerKV, row: int) -> int | None:
        """Cache `tokens`, whose KV is row `row` of `kv` (at least len(tokens) positions); the node, or None."""
        match = self.cache.match(tokens)
        length, matched = len(tokens), match.matched_len
        if matched >= length:
            return match.node
        bs = self.cache.block_size
        needed = math.ceil(length / bs) - matched // bs
        if needed > self.cache.num_blocks:  # longer than the whole pool: not cached
            return None
        self.cache.lock(match.node)  # allocate() must not evict the blocks the new ones continue
        try:
            try:
                new_blocks = self.cache.allocate(needed)
            except RuntimeError:  # the blocks it would need are held or locked: not cached
                return None
            try:
                if any(keys.shape[-2] < length for keys, _ in kv):
                    raise NotImplementedError(
                        "prefix_cache: a layer keeps fewer positions than the sequence has "
                        "(sliding-window attention?); use prefix_cache=False"
                    )
                if self.pool is None:
                    self.pool = KVPool.like(kv, self.cache.num_blocks, bs)
                layout = match.block_ids[: matched // bs] + new_blocks
                self.pool.write(layout, kv, matched, length, row=row)
                inserted = self.cache.insert(tokens, layout)
            except BaseException:
                self.cache.release(new_blocks)  # still held: insert did not take them
                raise
            if inserted.copy is not None:
                self.pool.copy(*inserted.copy)
            return inserted.node
        finally:
            self.cache.unlock(match.node)

    # -- decoding ----------------------------------------------------------------------------------------------

    def _expand_one(self, request: ExpandRequest) -> list[Child]:
        prefix = _check_prefix(request.prefix_ids)
        logits, past, node = self._prefill(prefix)
        try:
            return self._decode(request, prefix, logits, past)
        finally:
            if node is not None:
                self.cache.unlock(node)

    def _decode(self, request: ExpandRequest, prefix: np.ndarray, logits: torch.Tensor, past) -> list[Child]:
        n = request.n
        generator = torch.Generator(device=self.device)
        if request.seed is not None:
            generator.manual_seed(request.seed)
        else:
            generator.seed()
        answer_so_far = ""
        if request.stop_at_step and request.answer_start is not None:
            answer_so_far = self.tokenizer.decode(
                list(request.prefix_ids[request.answer_start :]), skip_special_tokens=True
            )
        rows = [
            _Row(StepScanner(answer_so_far, request.call_format) if request.stop_at_step else None) for _ in range(n)
        ]
        if n > 1:
            past.batch_repeat_interleave(n)
        logits = _wide(logits).expand(n, -1)
        active = list(range(n))  # the rows of `past` and `logits`, by child index
        for _ in range(request.max_new_tokens):
            tokens = sample_tokens(logits, request.temperature, request.top_p, generator)
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None])[:, 0]
            still = []
            for position, (child, token, logprob) in enumerate(zip(active, tokens.tolist(), logprobs.tolist())):
                row = rows[child]
                row.token_ids.append(token)
                row.logprobs.append(logprob)
                row.finish_reason = self._finish_reason(row, request)
                if row.finish_reason is None:
                    still.append(position)
                elif self.cache_children:
                    # Its KV covers the prefix and every token but the one just drawn.
                    self._store(
                        np.concatenate([prefix, np.asarray(row.token_ids[:-1], dtype=np.int32)]),
                        _layer_kv(past),
                        row=position,
                    )
            if not still:
                break
            if len(still) < len(active):
                past.batch_select_indices(torch.as_tensor(still, device=self.device))
            active = [active[p] for p in still]
            logits, past = self._forward_rows(tokens[still], past)
        self.stats.generated += sum(len(row.token_ids) for row in rows)
        return [
            Child(
                row.token_ids,
                self.tokenizer.decode(row.token_ids, skip_special_tokens=True),
                row.logprobs,
                row.finish_reason or "length",
            )
            for row in rows
        ]

    def _forward_rows(self, tokens: torch.Tensor, past):
        out = self._call(tokens[:, None], past)
        return _wide(out.logits[:, -1]), getattr(out, self._cache_arg)

    def _finish_reason(self, row: _Row, request: ExpandRequest) -> str | None:
        if row.token_ids[-1] in self.stop_token_ids:
            return "stop"
        if row.scanner is not None:
            text = self.tokenizer.decode(row.token_ids, skip_special_tokens=True)
            # A token may end inside a multi-byte character: hold back its replacement characters until the
            # character is complete (the boundary characters themselves are ASCII).
            stable = len(text.rstrip("\ufffd"))
            if stable > row.fed_chars:
                boundary = row.scanner.feed(text[row.fed_chars : stable])
                row.fed_chars = stable
                if boundary is not None:
                    return "step"
        if len(row.token_ids) >= request.max_new_tokens:
            return "length"
        return None

    # -- scoring -----------------------------------------------------------------------------------------------

    def _score(self, logits: torch.Tensor, past, continuations: list[list[int]]) -> list[list[float]]:
        rows = [i for i, c in enumerate(continuations) if c]
        out: list[list[float]] = [[] for _ in continuations]
        if not rows:
            return out
        width = max(len(continuations[i]) for i in rows)
        # Right padding: causal attention keeps the pad tokens after a row's end from changing its log-probs.
        batch = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        for r, i in enumerate(rows):
            batch[r, : len(continuations[i])] = torch.as_tensor(continuations[i], device=self.device)
        step_logits = _wide(logits).expand(len(rows), -1)[:, None]
        if width > 1:
            if len(rows) > 1:
                past.batch_repeat_interleave(len(rows))
            more = self._call(batch[:, :-1], past).logits
            step_logits = torch.cat([step_logits, _wide(more)], dim=1)
        token_logprobs = torch.log_softmax(step_logits, dim=-1).gather(-1, batch[:, :, None])[:, :, 0]
        for r, i in enumerate(rows):
            out[i] = token_logprobs[r, : len(continuations[i])].tolist()
        return out

    def _record_cache_stats(self) -> None:
        if self.cache is not None:
            self.stats.extra["cache"] = self.cache.stats


def _wide(logits: torch.Tensor) -> torch.Tensor:
    """Logits in at least float32 (float64 stays float64)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def _layer_kv(past) -> LayerKV:
    if hasattr(past, "layers"):  # transformers >= 4.54: a `DynamicLayer` per layer
        return [(layer.keys, layer.values) for layer in past.layers]
    return list(zip(past.key_cache, past.value_cache, strict=True))  # 4.53: two lists of tensors


def _check_prefix(prefix_ids: Sequence[int]) -> np.ndarray:
    prefix = as_token_array(prefix_ids)
    if prefix.size == 0:
        raise ValueError("prefix_ids: expected a non-empty sequence of token ids")
    return prefix


def _default_stop_ids(tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    end = tokenizer.convert_tokens_to_ids(END) if END in tokenizer.get_vocab() else None
    ids.add(end)
    return {i for i in ids if i is not None}


def _check_cacheable(model) -> None:
    """Refuse models whose cache is not one full-attention KV per layer (the pool's layout)."""
    config = model.config.get_text_config(decoder=True) if hasattr(model.config, "get_text_config") else model.config
    layer_types = getattr(config, "layer_types", None) or []
    if any(kind != "full_attention" for kind in layer_types):
        raise NotImplementedError(
            f"prefix_cache: needs full attention in every layer, the model has "
            f"{sorted(set(layer_types))}; use prefix_cache=False"
        )
