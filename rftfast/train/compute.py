"""How much model compute a stage spends, counted in token passes, so that arms of a comparison can be matched.

Every forward call of the model's decoder is counted by the positions it computes (padding included: it is
computed too), split by whether it builds a graph for a backward. A training position costs about three
forward passes (the backward is about two), so `token_passes = inference_tokens + 3 * training_tokens`. Decoding
with a KV cache counts each step's new positions only, as it computes only those. Gradient checkpointing's
recomputation is not counted (it is the same work, done twice by choice), nor is generation in another engine
(vLLM), which this process does not run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

BACKWARD_COST = 2  # a backward pass costs about two forward passes (the weight and the input gradients)


@dataclass
class Compute:
    """Positions the model computed: without a graph (scoring, decoding) and with one (training)."""

    inference_tokens: int = 0
    training_tokens: int = 0
    paused: bool = False  # diagnostics run with the meter paused: they are not the method's compute

    @property
    def token_passes(self) -> int:
        return self.inference_tokens + (1 + BACKWARD_COST) * self.training_tokens

    def to_json(self) -> dict:
        return {"inference_tokens": self.inference_tokens, "training_tokens": self.training_tokens,
                "token_passes": self.token_passes}  # fmt: skip

    @contextlib.contextmanager
    def pause(self) -> Iterator[None]:
        """Passes made inside are not counted (diagnostics, not the method's work)."""
        paused, self.paused = self.paused, True
        try:
            yield
        finally:
            self.paused = paused


def _decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The module every pass goes through: a causal LM's decoder (`get_decoder`, which PEFT's wrapper forwards),
    or the model itself. LoRA and FSDP2 wrap or shard its modules in place, so a hook on it sees their passes."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    get_decoder = getattr(model, "get_decoder", None)
    return get_decoder() if callable(get_decoder) else model


@contextlib.contextmanager
def count_compute(model: torch.nn.Module) -> Iterator[Compute]:
    """Count the positions every forward of `model`'s decoder computes while the context is open."""
    compute = Compute()

    def count(module, args, kwargs):
        if compute.paused:
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        shape = ids.shape if ids is not None else embeds.shape[:-1] if embeds is not None else None
        if shape is None:
            return
        positions = int(torch.Size(shape).numel())
        if torch.is_grad_enabled() and module.training:
            compute.training_tokens += positions
        else:
            compute.inference_tokens += positions

    handle = _decoder(model).register_forward_pre_hook(count, with_kwargs=True)
    try:
        yield compute
    finally:
        handle.remove()
