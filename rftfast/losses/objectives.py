"""Preference objectives as plain functions of sequence log-probs.

Each objective maps one batch of pairs to a loss per pair. The formulas follow TRL's
`DPOTrainer` (sigmoid ... sigmoid_norm), `CPOTrainer` (SimPO) and `ORPOTrainer` (ORPO); the
tests check them against TRL and Liger-Kernel. Log-probs are *summed* over each completion;
objectives that length-normalise (ipo, sigmoid_norm, simpo, orpo) divide by the lengths
themselves, so one gradient path serves them all.

`label_smoothing` ε: robust and exo_pair use it as TRL does; sigmoid, simpo and aot turn it into
the conservative (cDPO) mix (1 - ε)·loss(x) + ε·loss(-x), as TRL's CPO trainer and its aot loss
do. TRL >= 1.0's DPO trainer (1.16 checked) ignores ε for sigmoid; here it is never ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypedDict, Unpack

import torch
import torch.nn.functional as F

_LN2 = math.log(2.0)


@dataclass
class Pairs:
    """Sequence log-probs of P pairs; every field is [P]. Lengths count the completion tokens."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None
    chosen_lengths: torch.Tensor | None = None
    rejected_lengths: torch.Tensor | None = None

    def _ref(self, ref: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(like) if ref is None else ref

    @property
    def chosen_logratios(self) -> torch.Tensor:
        return self.chosen - self._ref(self.ref_chosen, self.chosen)

    @property
    def rejected_logratios(self) -> torch.Tensor:
        return self.rejected - self._ref(self.ref_rejected, self.rejected)

    @property
    def delta(self) -> torch.Tensor:
        return self.chosen_logratios - self.rejected_logratios

    def _lengths(self, lengths: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        if lengths is None:
            raise ValueError("chosen_lengths/rejected_lengths: this loss type length-normalises and needs them")
        return lengths.to(like.dtype).clamp(min=1.0)

    def per_token(self, chosen: torch.Tensor, rejected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`chosen` and `rejected` divided by their completion lengths."""
        return chosen / self._lengths(self.chosen_lengths, chosen), rejected / self._lengths(
            self.rejected_lengths, rejected
        )


@dataclass(frozen=True)
class ObjectiveParams:
    beta: float = 0.1
    label_smoothing: float = 0.0
    gamma: float = 0.5  # SimPO's target reward margin
    discopop_tau: float = 0.05


def _smoothed_logistic(x: torch.Tensor, eps: float) -> torch.Tensor:
    return -F.logsigmoid(x) * (1 - eps) - F.logsigmoid(-x) * eps


def sigmoid(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    """DPO; with label smoothing ε it is conservative DPO (cDPO): (1 - ε)·DPO(chosen, rejected) +
    ε·DPO(rejected, chosen). TRL >= 1.0's DPO trainer silently ignores ε for sigmoid (only robust and
    exo_pair read it there), so for ε > 0 this differs from it by design; at ε = 0 both agree."""
    return _smoothed_logistic(k.beta * p.delta, k.label_smoothing)


def hinge(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    return torch.relu(1 - k.beta * p.delta)


def ipo(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    chosen, rejected = p.per_token(p.chosen_logratios, p.rejected_logratios)
    return (chosen - rejected - 1 / (2 * k.beta)) ** 2


def exo_pair(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    eps, x = k.label_smoothing, k.beta * p.delta
    return torch.sigmoid(x) * (F.logsigmoid(x) - math.log1p(-eps)) + torch.sigmoid(-x) * (
        F.logsigmoid(-x) - math.log(eps)
    )


def nca_pair(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    chosen, rejected = k.beta * p.chosen_logratios, k.beta * p.rejected_logratios
    return -F.logsigmoid(chosen) - 0.5 * F.logsigmoid(-chosen) - 0.5 * F.logsigmoid(-rejected)


def robust(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    eps, x = k.label_smoothing, k.beta * p.delta
    return (-(1 - eps) * F.logsigmoid(x) + eps * F.logsigmoid(-x)) / (1 - 2 * eps)


def bco_pair(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    return -F.logsigmoid(k.beta * p.chosen_logratios) - F.logsigmoid(-k.beta * p.rejected_logratios)


def sppo_hard(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    return (p.chosen_logratios - 0.5 / k.beta) ** 2 + (p.rejected_logratios + 0.5 / k.beta) ** 2


def aot(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    """Alignment via optimal transport: couples pairs by sorting margins across the batch."""
    logratios = torch.sort(p.chosen - p.rejected, dim=0).values
    ref = torch.sort(p._ref(p.ref_chosen, p.chosen) - p._ref(p.ref_rejected, p.rejected), dim=0).values
    return _smoothed_logistic(k.beta * (logratios - ref), k.label_smoothing)


def apo_zero(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    return 1 - torch.sigmoid(k.beta * p.chosen_logratios) + torch.sigmoid(k.beta * p.rejected_logratios)


def apo_down(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    return torch.sigmoid(k.beta * p.chosen_logratios) + 1 - torch.sigmoid(k.beta * p.delta)


def discopop(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    x = k.beta * p.delta
    mix = torch.sigmoid(x / k.discopop_tau)
    return -F.logsigmoid(x) * (1 - mix) + torch.exp(-x) * mix


def sigmoid_norm(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    chosen, rejected = p.per_token(p.chosen_logratios, p.rejected_logratios)
    return -F.logsigmoid(k.beta * (chosen - rejected))


def simpo(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    """SimPO: reference-free, on length-averaged log-probs, with target margin γ."""
    chosen, rejected = p.per_token(p.chosen, p.rejected)
    return _smoothed_logistic(k.beta * (chosen - rejected) - k.gamma, k.label_smoothing)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate everywhere (Mächler's log1mexp).

    Above -ln 2, 1 - exp(x) cancels (at x = -1e-8 it is exactly 0 in fp32), so use log(-expm1(x));
    below, exp(x) is small and log1p(-exp(x)) is the accurate one. Each branch gets an input clamped
    into its own range, so the branch `torch.where` drops cannot put inf or NaN into the gradient; and
    x is kept below 0 by the smallest normal number, so a sequence whose mean log-prob is 0 to working
    precision (certain) gives a finite, if large, log-odds instead of an infinite one.
    """
    tiny = torch.finfo(x.dtype).tiny
    near = torch.log(-torch.expm1(x.clamp(min=-_LN2, max=-tiny)))
    far = torch.log1p(-torch.exp(x.clamp(max=-_LN2)))
    return torch.where(x > -_LN2, near, far)


def orpo(p: Pairs, k: ObjectiveParams) -> torch.Tensor:
    """ORPO's odds-ratio term (add the NLL on chosen through `nll_weight`, as the paper does)."""
    chosen, rejected = p.per_token(p.chosen, p.rejected)
    log_odds = (chosen - rejected) - (log1mexp(chosen) - log1mexp(rejected))
    return -k.beta * F.logsigmoid(log_odds)


ObjectiveFn = Callable[[Pairs, ObjectiveParams], torch.Tensor]

OBJECTIVES: dict[str, ObjectiveFn] = {
    f.__name__: f
    for f in (
        sigmoid,
        hinge,
        ipo,
        exo_pair,
        nca_pair,
        robust,
        bco_pair,
        sppo_hard,
        aot,
        apo_zero,
        apo_down,
        discopop,
        sigmoid_norm,
        simpo,
        orpo,
    )
}

# Objectives that need no reference model. They are defined on length-averaged log-probs, and report
# rewards β × those (TRL's CPO/ORPO trainers and Liger do the same for SimPO and ORPO).
REFERENCE_FREE = frozenset({"simpo", "orpo"})
# Objectives whose loss couples pairs; every other one is a sum of independent per-pair terms,
# which is what lets the fused step finish a pair's gradients before it sees the next pair.
BATCH_COUPLED = frozenset({"aot"})


def check_objective(loss_types: Sequence[str], weights: Sequence[float] | None, params: ObjectiveParams) -> None:
    """Raise a ValueError naming the argument for unknown types or out-of-range parameters."""
    if not loss_types:
        raise ValueError("loss_type: at least one loss type is needed")
    for t in loss_types:
        if t not in OBJECTIVES:
            raise ValueError(f"loss_type: unknown loss type {t!r}; expected one of {sorted(OBJECTIVES)}")
    if weights is not None and len(weights) != len(loss_types):
        raise ValueError(f"loss_weights: {len(weights)} weights for {len(loss_types)} loss types")
    if weights is not None and not all(is_real_finite(w) for w in weights):
        raise ValueError(f"loss_weights: must be finite numbers, got {list(weights)}")
    # inf or NaN parameters give NaN losses (β = inf: inf · 0 at a zero margin), so they are refused here.
    if not (is_real_finite(params.beta) and params.beta > 0):
        raise ValueError(f"beta: must be > 0 and finite, got {params.beta}")
    eps = params.label_smoothing
    if not (is_real_finite(eps) and 0.0 <= eps < 0.5):
        raise ValueError(f"label_smoothing: must lie in [0, 0.5), got {eps}")
    if "exo_pair" in loss_types and eps <= 0:
        raise ValueError("label_smoothing: exo_pair needs label_smoothing > 0 (the EXO paper uses 1e-3)")
    if not is_real_finite(params.gamma):
        raise ValueError(f"gamma: must be finite, got {params.gamma}")
    if not (is_real_finite(params.discopop_tau) and params.discopop_tau > 0):
        raise ValueError(f"discopop_tau: must be > 0 and finite, got {params.discopop_tau}")


def is_real_finite(x: object) -> bool:
    try:
        return math.isfinite(x)
    except TypeError:  # not a real number at all
        return False


def preference_losses(
    pairs: Pairs,
    loss_type: str | Sequence[str] = "sigmoid",
    *,
    loss_weights: Sequence[float] | None = None,
    params: ObjectiveParams | None = None,
) -> torch.Tensor:
    """Per-pair loss [P] of one objective or a weighted mix (`loss_weights`, default all 1)."""
    types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    params = params or ObjectiveParams()
    check_objective(types, loss_weights, params)
    weights = loss_weights or [1.0] * len(types)
    total = None
    for t, w in zip(types, weights, strict=True):
        term = OBJECTIVES[t](pairs, params) * w
        total = term if total is None else total + term
    return total


class ObjectiveOptions(TypedDict, total=False):
    """The objective's keyword options, one home for `preference_loss` and `FusedDPOLoss`.

    `loss_weights` weighs the types of a `loss_type` list (default all 1); `beta`, `label_smoothing`,
    `gamma` and `discopop_tau` are the fields of `ObjectiveParams`, with its defaults.
    """

    loss_weights: Sequence[float] | None
    beta: float
    label_smoothing: float
    gamma: float
    discopop_tau: float


@dataclass(frozen=True)
class Objective:
    """One objective or a weighted mix, with its parameters, checked when it is built."""

    loss_types: list[str]
    loss_weights: list[float] | None
    params: ObjectiveParams

    @classmethod
    def build(cls, loss_type: str | Sequence[str], options: Mapping, caller: str) -> Objective:
        """From `loss_type` and `ObjectiveOptions`; an unknown option is a TypeError, as for any keyword."""
        unknown = sorted(set(options) - set(ObjectiveOptions.__annotations__))
        if unknown:
            raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
        types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
        weights = options.get("loss_weights")
        weights = list(weights) if weights is not None else None
        params = ObjectiveParams(**{k: v for k, v in options.items() if k != "loss_weights"})
        check_objective(types, weights, params)
        return cls(types, weights, params)

    def losses(self, pairs: Pairs) -> torch.Tensor:
        """Per-pair loss [P]."""
        return preference_losses(pairs, self.loss_types, loss_weights=self.loss_weights, params=self.params)


def preference_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    *,
    loss_type: str | Sequence[str] = "sigmoid",
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    **objective: Unpack[ObjectiveOptions],
) -> torch.Tensor:
    """Mean preference loss over pairs, from summed sequence log-probs ([P] each).

    A drop-in for the loss of TRL's trainers: `loss_type` is one name or a list mixed with
    `loss_weights` (see `ObjectiveOptions`). Length-normalising types need `chosen_lengths` and
    `rejected_lengths`.
    """
    pairs = Pairs(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, chosen_lengths, rejected_lengths)
    return Objective.build(loss_type, objective, "preference_loss").losses(pairs).mean()
