"""The generation contract the search relies on: expand many prefixes with sampled continuations.

`Generator.expand(requests)` takes token-id prefixes (prompt + the answer so far) and returns, per
request, `n` sampled continuations. A continuation may stop at the end of the next answer step
(`stop_at_step`), so the search grows the answer one semantic step at a time. Backends report how
many prefill tokens they computed and how many they reused from a prefix cache.

The protocol is the whole of what a caller may use: `expand`, `logprobs` (for the judge reward),
`stats`, `data_parallel` (which share of the work this process serves) and `close` (free the engine
before training resumes). A caller never reaches into a backend's attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from rftfast.answer import check_format


@dataclass(frozen=True)
class ExpandRequest:
    """Sample `n` continuations of `prefix_ids`.

    `answer_start` is the index in `prefix_ids` where the answer begins: step boundaries are found
    in the answer text from there on (None: the whole prefix is prompt, the answer is empty), in the
    answer's `call_format` ("pythonic", "json" or "hermes": `rftfast.answer.StepScanner`'s format).
    """

    prefix_ids: tuple[int, ...]
    n: int = 1
    max_new_tokens: int = 32
    stop_at_step: bool = True
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    answer_start: int | None = None
    call_format: str = "pythonic"

    def __post_init__(self) -> None:
        # A bad name fails here, not in the middle of a batch's decoding.
        check_format(self.call_format, "call_format")
        if not self.prefix_ids:
            raise ValueError("prefix_ids: empty prefix")
        if self.n < 1 or self.max_new_tokens < 1:
            raise ValueError(f"n and max_new_tokens must be >= 1, got {self.n} and {self.max_new_tokens}")
        if not self.temperature >= 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature must be >= 0 and top_p in (0, 1], got {self.temperature}, {self.top_p}")


@dataclass
class Child:
    """One continuation: its new token ids, their text, per-token log-probs, and why it stopped.

    `finish_reason`: "step" (an answer step was completed), "stop" (end of answer / EOS), or
    "length" (max_new_tokens reached).
    """

    token_ids: list[int]
    text: str
    logprobs: list[float]
    finish_reason: str

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else 0.0


@dataclass
class GenerationStats:
    """Prefill tokens computed vs reused, tokens generated, and time spent, accumulated."""

    prefill_computed: int = 0
    prefill_reused: int = 0
    generated: int = 0
    seconds: float = 0.0
    calls: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def reuse_fraction(self) -> float:
        total = self.prefill_computed + self.prefill_reused
        return self.prefill_reused / total if total else 0.0


@runtime_checkable
class Generator(Protocol):
    """What the search needs of a generation backend (see the module docstring)."""

    stats: GenerationStats

    @property
    def data_parallel(self) -> tuple[int, int]:
        """(this replica's index, the number of replicas): the caller serves share `index` of `number`."""
        ...

    def expand(self, requests: Sequence[ExpandRequest]) -> list[list[Child]]:
        """Per request, `request.n` children, in request order."""
        ...

    def logprobs(self, prefix_ids: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[list[float]]:
        """Per-token log-probs of each continuation after `prefix_ids` (used by the judge reward)."""
        ...

    def close(self) -> None:
        """Free the engine and the device memory it holds; idempotent. A closed generator does not expand."""
        ...
