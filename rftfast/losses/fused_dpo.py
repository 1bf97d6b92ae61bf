"""`FusedDPOLoss`: a preference loss straight from hidden states and the LM-head weight.

Two strategies compute the same loss and gradients:

- ``"fused"`` (default where it applies): the gradients are formed during the forward. Pairs are
  processed one group at a time; a group's probabilities stay in one buffer until the group's
  sequence log-probs, and so each pair's loss and its two upstream gradients, are known; then
  the buffer becomes the logit gradient in place and feeds the two gradient matmuls. The head
  costs exactly the floor of the step: policy forward, reference forward (unless precomputed)
  and the two gradient products. Memory above the inputs is one group's `tokens × V` buffer.
  It needs an objective whose loss is a sum of per-pair terms (all but ``aot``).
- ``"recompute"``: `linear_logprobs` (chunked forward, recomputing backward) and ordinary
  autograd through the objective. One more head matmul, but only a `chunk × V` buffer, and any
  objective works.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Unpack

import torch

from rftfast.losses.objectives import (
    BATCH_COUPLED,
    REFERENCE_FREE,
    Objective,
    ObjectiveOptions,
    Pairs,
    is_real_finite,
)
from rftfast.ops import head
from rftfast.ops.logprob import (
    HeadOptions,
    check_head_inputs,
    head_options,
    linear_logprobs,
    linear_logprobs_with_reference,
    refuse,
    segment_ids,
)

STRATEGIES = ("auto", "fused", "recompute")


class LossOptions(ObjectiveOptions, HeadOptions, total=False):
    """`FusedDPOLoss`'s keyword options: the objective's and the head's (`chunk_rows` serves the recompute
    strategy's torch backend)."""


@dataclass
class PreferenceOutput:
    """The loss and the metrics a DPO trainer logs (all but `loss` are detached).

    Per-pair tensors are [P]; `chosen_logps`/`rejected_logps` are summed over the completion.
    """

    loss: torch.Tensor
    losses: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    margins: torch.Tensor
    reward_accuracy: torch.Tensor
    chosen_logps: torch.Tensor
    rejected_logps: torch.Tensor
    nll: torch.Tensor

    def metrics(self) -> dict[str, float]:
        """Batch means under TRL's metric names, ready for a logger."""
        return {
            "loss": float(self.loss.detach()),
            "rewards/chosen": float(self.chosen_rewards.mean()),
            "rewards/rejected": float(self.rejected_rewards.mean()),
            "rewards/margins": float(self.margins.mean()),
            "rewards/accuracies": float(self.reward_accuracy),
            "logps/chosen": float(self.chosen_logps.mean()),
            "logps/rejected": float(self.rejected_logps.mean()),
            "nll_loss": float(self.nll),
        }


# ----------------------------------------------------------------------------- layout


@dataclass
class _Layout:
    """Flattened tokens and the canonical sequence of each: s < P is pair s's chosen, s >= P its rejected."""

    hidden: torch.Tensor  # [N, H]
    labels: torch.Tensor  # [N]
    seq: torch.Tensor  # [N] canonical sequence index
    num_pairs: int


def _layout(hidden, labels, cu_seqlens, pair_ids, name="policy_hidden") -> _Layout:
    if hidden.dim() == 3:
        if cu_seqlens is not None or pair_ids is not None:
            refuse("cu_seqlens", "padded [2B, T, H] input takes no cu_seqlens/pair_ids; pass packed [N, H] input")
        if labels.shape != hidden.shape[:2]:
            refuse("labels", f"expected shape {tuple(hidden.shape[:2])} to match {name}, got {tuple(labels.shape)}")
    elif hidden.dim() == 2:
        if cu_seqlens is None:
            refuse("cu_seqlens", f"packed [N, H] {name} needs cu_seqlens [S+1]")
    else:
        refuse(name, f"expected [2B, T, H] (padded) or [N, H] (packed), got shape {tuple(hidden.shape)}")
    segment, num_seqs = segment_ids(labels, cu_seqlens)
    if pair_ids is None:
        if num_seqs % 2:
            refuse(
                "labels",
                f"paired layout needs an even number of sequences (chosen first, then rejected); got {num_seqs}",
            )
        canonical = torch.arange(num_seqs, device=labels.device)
        num_pairs = num_seqs // 2
    else:
        canonical, num_pairs = _canonical_from_pair_ids(pair_ids, num_seqs, labels.device)
    if num_pairs == 0:
        refuse(name, "the batch holds no pairs: there is no mean loss over zero pairs to take")
    flat = hidden.reshape(-1, hidden.shape[-1])
    return _Layout(flat, labels.reshape(-1), canonical[segment], num_pairs)


def _canonical_from_pair_ids(pair_ids: torch.Tensor, num_seqs: int, device) -> tuple[torch.Tensor, int]:
    """Packed sequences tagged with pair ids: a pair's first sequence is chosen, its second rejected."""
    ids = pair_ids.to(device=device, dtype=torch.int64)
    if ids.shape != (num_seqs,):
        refuse("pair_ids", f"expected one id per sequence, shape ({num_seqs},), got {tuple(pair_ids.shape)}")
    num_pairs = num_seqs // 2
    counts = torch.bincount(ids.clamp(min=0), minlength=max(num_pairs, 1))
    if num_seqs % 2 or int(ids.min()) < 0 or int(ids.max()) >= num_pairs or bool((counts != 2).any()):
        refuse("pair_ids", f"each pair id in [0, {num_pairs}) must appear exactly twice; got {ids.tolist()}")
    second = torch.zeros_like(ids)
    seen = torch.zeros(num_pairs, dtype=torch.bool, device=device)
    for s, p in enumerate(ids.tolist()):  # sequences per batch are few: a Python loop is clearest
        second[s] = int(seen[p])
        seen[p] = True
    return ids + second * num_pairs, num_pairs


def _require_tensors(optional: bool = False, **tensors) -> None:
    """ValueError naming the first argument that is not a torch.Tensor (None allowed if `optional`)."""
    for name, t in tensors.items():
        if not (isinstance(t, torch.Tensor) or (optional and t is None)):
            refuse(name, f"expected a torch.Tensor{' or None' if optional else ''}, got {type(t).__name__}")


# ----------------------------------------------------------------------------- fused strategy


class _FusedStep(torch.autograd.Function):
    """Runs the fused forward (which already forms the gradients) and replays them in backward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, engine):
        loss, grads = engine.run(hidden, weight, bias)
        ctx.save_for_backward(*(g if g is not None else torch.empty(0) for g in grads))
        ctx.has = [g is not None for g in grads]
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grads = [g if has else None for g, has in zip(ctx.saved_tensors, ctx.has, strict=True)]
        if not bool(grad_loss == 1):
            grads = [g * grad_loss.to(g.dtype) if g is not None else None for g in grads]
        return (*grads, None)


@dataclass
class _FusedEngine:
    """One fused preference step over a `_Layout`; see the module docstring."""

    layout: _Layout
    kept: torch.Tensor  # [K] positions of the labels that count
    ref_logps: torch.Tensor | None  # [2P] canonical order, or None (reference-free)
    lengths: torch.Tensor  # [2P] float
    loss_fn: object  # callable(Pairs) -> per-pair losses
    nll_weight: float
    temperature: float
    softcap: float | None
    group_rows: int
    need_grads: tuple[bool, bool, bool]
    seq_logps: torch.Tensor | None = None
    pair_losses: torch.Tensor | None = None
    nll: torch.Tensor | None = None

    def run(self, hidden, weight, bias):
        lay, p_total = self.layout, self.layout.num_pairs
        operand = head.fp32_operand(weight)
        device = hidden.device
        # Order the counted tokens pair by pair, chosen before rejected, so a group is a slice.
        pair_of, rejected = lay.seq[self.kept] % p_total, lay.seq[self.kept] >= p_total
        order = torch.argsort(pair_of * 2 + rejected.to(torch.int64), stable=True)
        tokens, pair_of, rejected = self.kept[order], pair_of[order], rejected[order]
        pair_end = torch.cumsum(torch.bincount(pair_of, minlength=p_total), 0).tolist()
        chosen_tokens = max(int((~rejected).sum()), 1)

        want_hidden, want_weight, want_bias = self.need_grads
        any_grad = any(self.need_grads)
        grad_hidden = torch.zeros(hidden.shape, dtype=torch.float32, device=device) if want_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=device) if want_weight else None
        grad_bias = torch.zeros(weight.shape[0], dtype=torch.float32, device=device) if want_bias else None
        seq_logps = torch.zeros(2 * p_total, dtype=torch.float32, device=device)
        pair_losses = torch.zeros(p_total, dtype=torch.float32, device=device)
        nll_sum = torch.zeros((), dtype=torch.float32, device=device)
        groups = [(p0, p1, pair_end[p0 - 1] if p0 else 0, pair_end[p1 - 1]) for p0, p1 in self._groups(pair_end)]
        widest = max((b - a for *_, a, b in groups), default=0)
        buf = torch.empty((widest, weight.shape[0]), dtype=torch.float32, device=device)

        for p0, p1, a, b in groups:  # every pair has tokens (forward checks), so no group is empty
            rows, y = tokens[a:b], lay.labels[tokens[a:b]].to(torch.int64)
            h = hidden.index_select(0, rows)
            z = buf[: b - a]
            tanh = head.logits_into(z, h, operand, bias, self.temperature, self.softcap)
            tok_logp, _, inv_sum = head.softmax_(z, y)  # z now holds the unnormalised probabilities
            seq = pair_of[a:b] + rejected[a:b].to(torch.int64) * p_total
            seq_logps.index_add_(0, seq, tok_logp)
            nll_sum -= tok_logp[~rejected[a:b]].sum()

            # The group's pair losses on a tiny graph of sequence log-probs gives each sequence's
            # upstream gradient; every token of that sequence shares it.
            pairs = torch.arange(p0, p1, device=device)
            chosen = seq_logps[pairs].clone().requires_grad_(any_grad)
            rejected_lp = seq_logps[pairs + p_total].clone().requires_grad_(any_grad)
            with torch.enable_grad():
                losses = self.loss_fn(self._pairs(pairs, chosen, rejected_lp))
                total = losses.sum() / p_total
            pair_losses[pairs] = losses.detach()
            if not any_grad:
                continue
            g_chosen, g_rejected = torch.autograd.grad(total, (chosen, rejected_lp))
            local = pair_of[a:b] - p0
            g_tok = torch.where(rejected[a:b], g_rejected[local], g_chosen[local])
            if self.nll_weight:
                g_tok = g_tok - (~rejected[a:b]).to(torch.float32) * (self.nll_weight / chosen_tokens)
            dz = head.logit_grad_(z, inv_sum, y, g_tok.to(torch.float32), tok_logp, self.temperature, tanh)
            dh = head.accumulate_head_grads(dz, h, operand, (grad_weight, grad_bias), want_hidden)
            if want_hidden:
                grad_hidden.index_copy_(0, rows, dh)

        self.seq_logps, self.pair_losses = seq_logps, pair_losses
        self.nll = nll_sum / chosen_tokens
        loss = pair_losses.sum() / p_total + self.nll_weight * self.nll
        grads = (
            grad_hidden.to(hidden.dtype) if want_hidden else None,
            grad_weight.to(weight.dtype) if want_weight else None,
            grad_bias.to(bias.dtype) if want_bias else None,
        )
        return loss, grads

    def _groups(self, pair_end: list[int]):
        """Consecutive pairs whose tokens fit `group_rows` together (a wider pair goes alone)."""
        start, first_token = 0, 0
        for p, end in enumerate(pair_end):
            if end - first_token > self.group_rows and p > start:
                yield start, p
                start, first_token = p, pair_end[p - 1]
        if start < len(pair_end):
            yield start, len(pair_end)

    def _pairs(self, pairs, chosen, rejected) -> Pairs:
        p = self.layout.num_pairs
        ref = self.ref_logps
        return Pairs(
            chosen,
            rejected,
            None if ref is None else ref[pairs],
            None if ref is None else ref[pairs + p],
            self.lengths[pairs],
            self.lengths[pairs + p],
        )


# ----------------------------------------------------------------------------- module


class FusedDPOLoss(torch.nn.Module):
    """Preference loss from hidden states and the LM head, never materialising `tokens × V` logits.

    Args:
        loss_type: one of `rftfast.losses.OBJECTIVES` (TRL's names, plus "simpo" and "orpo"), or a
            list of them mixed with `loss_weights`.
        nll_weight: weight of the mean NLL of the chosen tokens added to the loss (default: 1 for
            ORPO, as in its paper; 0 otherwise).
        average_logprobs: length-average every sequence log-prob before the objective (Liger's
            `average_log_prob`). Objectives that normalise on their own (ipo, sigmoid_norm, simpo,
            orpo) are then not divided again: every objective normalises exactly once.
        reference_free: allow reference-based objectives without a reference (its log-probs are 0,
            as in TRL's CPO trainer and Liger's CPO loss).
        strategy: "auto" (fused where the objective allows), "fused" or "recompute".
        group_bytes: fp32 logits the fused strategy keeps per group of pairs (at least one pair).
        options: `LossOptions`: the objective's (`loss_weights`, `beta`, `label_smoothing`, `gamma` the
            SimPO margin, `discopop_tau`: as in TRL) and the head's (`ignore_index`, `temperature`,
            `softcap`, `backend`: of the recompute strategy and the reference forward).

    Rewards follow each objective's own convention: β × (log-prob − reference log-prob), summed
    over the completion (length-averaged with `average_logprobs`), the reference being 0 when
    reference-free (TRL's DPO and CPO trainers, Liger's DPO and CPO); for SimPO and ORPO, which are
    defined on length-averaged log-probs, β × the mean log-prob (TRL's CPO/ORPO trainers, Liger).

    Every option is checked when the module is built (ValueError naming it). A batch must hold at
    least one pair, and every chosen and rejected sequence at least one counted (non-ignored)
    label: an empty completion has no log-prob to prefer or not, ORPO's odds of it are infinite and
    the length-normalising objectives would divide by zero, so such a batch is refused with a
    ValueError naming the pair, whatever the strategy.
    """

    def __init__(
        self,
        loss_type: str | Sequence[str] = "sigmoid",
        *,
        nll_weight: float | None = None,
        average_logprobs: bool = False,
        reference_free: bool = False,
        strategy: str = "auto",
        group_bytes: int = 64 * 2**20,
        **options: Unpack[LossOptions],
    ) -> None:
        super().__init__()
        options = dict(options)
        objective = {k: options.pop(k) for k in list(options) if k in ObjectiveOptions.__annotations__}
        self.objective = Objective.build(loss_type, objective, "FusedDPOLoss")
        self.head = head_options(options, "FusedDPOLoss")
        self.loss_types = self.objective.loss_types
        if nll_weight is not None and not (is_real_finite(nll_weight) and nll_weight >= 0):
            raise ValueError(f"nll_weight: must be >= 0 and finite, or None, got {nll_weight}")
        if not (isinstance(group_bytes, int) and not isinstance(group_bytes, bool) and group_bytes > 0):
            raise ValueError(f"group_bytes: must be a positive int, got {group_bytes!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy: unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        if strategy == "fused" and BATCH_COUPLED.intersection(self.loss_types):
            raise ValueError(
                f"strategy: 'fused' needs per-pair objectives; {sorted(BATCH_COUPLED)} couple pairs "
                "(use 'recompute' or 'auto')"
            )
        self.nll_weight = float(nll_weight if nll_weight is not None else (1.0 if "orpo" in self.loss_types else 0.0))
        self.average_logprobs = average_logprobs
        self.reference_free = reference_free or all(t in REFERENCE_FREE for t in self.loss_types)
        self.ignore_index, self.temperature, self.softcap = (
            self.head[k] for k in ("ignore_index", "temperature", "softcap")
        )
        self.strategy, self.group_bytes = strategy, group_bytes

    def extra_repr(self) -> str:
        return f"loss_type={self.loss_types}, beta={self.objective.params.beta}, strategy={self.strategy!r}"

    # The per-pair losses of canonical-order sequence log-probs; shared by both strategies.
    def _pair_losses(self, pairs: Pairs) -> torch.Tensor:
        if self.average_logprobs:
            # Averaged here, the objectives that length-normalise themselves see lengths of 1: each
            # objective divides by the length exactly once.
            lc, lr = pairs.chosen_lengths, pairs.rejected_lengths
            ones = torch.ones_like(lc)
            pairs = Pairs(
                pairs.chosen / lc,
                pairs.rejected / lr,
                None if pairs.ref_chosen is None else pairs.ref_chosen / lc,
                None if pairs.ref_rejected is None else pairs.ref_rejected / lr,
                ones,
                ones,
            )
        return self.objective.losses(pairs)

    def forward(
        self,
        policy_hidden: torch.Tensor,
        lm_head_weight: torch.Tensor,
        labels: torch.Tensor,
        ref_hidden: torch.Tensor | None = None,
        ref_weight: torch.Tensor | None = None,
        ref_logps: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
        *,
        bias: torch.Tensor | None = None,
        ref_bias: torch.Tensor | None = None,
        cu_seqlens: torch.Tensor | None = None,
        pair_ids: torch.Tensor | None = None,
    ) -> PreferenceOutput:
        """Loss and metrics of a batch of pairs.

        Layouts: padded `policy_hidden` [2B, T, H] with `labels` [2B, T], the B chosen rows first
        and then the B rejected rows (TRL/Liger convention); or packed [N, H] with `labels` [N],
        `cu_seqlens` [S+1] and optionally `pair_ids` [S] (a pair's first sequence is chosen, its
        second rejected; without pair_ids the first S/2 sequences are the chosen ones). Labels are
        aligned with the hidden states. The reference comes as `ref_hidden` (same layout; with
        `ref_weight`, default the policy head) or as precomputed `ref_logps` [2B] (chosen first)
        or a (chosen, rejected) tuple of [B] tensors. Every sequence needs at least one counted label
        (see the class docstring).
        """
        kwargs = {"bias": bias, "ref_bias": ref_bias, "cu_seqlens": cu_seqlens, "pair_ids": pair_ids}
        device = policy_hidden.device.type if isinstance(policy_hidden, torch.Tensor) else "cpu"
        if not torch.is_autocast_enabled(device):
            return self._forward(policy_hidden, lm_head_weight, labels, ref_hidden, ref_weight, ref_logps, **kwargs)
        # Inside an autocast region (a trainer's bf16 mode): the head's matmul would run in autocast's dtype,
        # so hidden states that come in that dtype meet a head cast to it (differentiably: the fp32 master
        # weight gets its gradient); the loss then keeps its own precision (fp32 softmax statistics and
        # gradient buffers), which autocast must not recast, so it runs with autocast off.
        dtype = torch.get_autocast_dtype(device)
        cast = lambda t: t.to(dtype) if isinstance(t, torch.Tensor) else t  # noqa: E731 (bad inputs: refused below)
        if policy_hidden.dtype == dtype:
            lm_head_weight, kwargs["bias"] = cast(lm_head_weight), cast(bias)
        if isinstance(ref_hidden, torch.Tensor) and ref_hidden.dtype == dtype:
            ref_weight, kwargs["ref_bias"] = cast(ref_weight), cast(ref_bias)
        with torch.autocast(device, enabled=False):
            return self._forward(policy_hidden, lm_head_weight, labels, ref_hidden, ref_weight, ref_logps, **kwargs)

    def _forward(
        self, policy_hidden, lm_head_weight, labels, ref_hidden, ref_weight, ref_logps, *, bias, ref_bias, cu_seqlens,
        pair_ids,
    ) -> PreferenceOutput:  # fmt: skip
        _require_tensors(policy_hidden=policy_hidden, lm_head_weight=lm_head_weight, labels=labels)
        _require_tensors(optional=True, ref_hidden=ref_hidden, ref_weight=ref_weight, bias=bias, ref_bias=ref_bias)
        _require_tensors(optional=True, cu_seqlens=cu_seqlens, pair_ids=pair_ids)
        lay = _layout(policy_hidden, labels, cu_seqlens, pair_ids)
        check_head_inputs(lay.hidden, lm_head_weight, lay.labels, bias, self.head, name="policy_hidden")
        p = lay.num_pairs
        if ref_hidden is not None and ref_logps is not None:
            refuse("ref_logps", "pass either ref_hidden or ref_logps, not both")
        if ref_hidden is not None and ref_hidden.shape != policy_hidden.shape:
            refuse(
                "ref_hidden",
                f"shape {tuple(ref_hidden.shape)} differs from policy_hidden's {tuple(policy_hidden.shape)}",
            )
        if ref_hidden is None and ref_logps is None and not self.reference_free:
            refuse(
                "ref_logps",
                f"loss types {self.loss_types} need a reference: pass ref_hidden or ref_logps (or reference_free=True)",
            )
        lengths = torch.zeros(2 * p, dtype=torch.float32, device=labels.device).index_add_(
            0, lay.seq, (lay.labels != self.ignore_index).to(torch.float32)
        )
        self._check_lengths(lengths)
        ref = self._precomputed_reference(ref_logps, p, labels.device)

        strategy = self.strategy
        if strategy == "auto":
            strategy = "recompute" if BATCH_COUPLED.intersection(self.loss_types) else "fused"
        if strategy == "fused":
            ref = self._reference(lay, ref_hidden, ref_weight, ref_bias, ref, lm_head_weight, bias)
            loss, seq_logps, losses, nll, ref = self._fused(lay, lm_head_weight, bias, ref, lengths)
        else:  # the reference rides along with the policy in linear_logprobs_with_reference
            loss, seq_logps, losses, nll, ref = self._recompute(
                lay, lm_head_weight, bias, ref, lengths, ref_hidden, ref_weight, ref_bias
            )
        return self._output(
            loss, seq_logps.detach(), losses.detach(), nll.detach(), None if ref is None else ref.detach(), lengths
        )

    def _check_lengths(self, lengths: torch.Tensor) -> None:
        empty = (lengths == 0).nonzero().squeeze(1).tolist()
        if empty:
            p = lengths.shape[0] // 2
            which = [f"pair {s % p}'s {'rejected' if s >= p else 'chosen'}" for s in empty]
            refuse(
                "labels",
                f"{len(which)} sequence(s) have no counted tokens (every label is ignore_index="
                f"{self.ignore_index}): {', '.join(which[:4])}{', ...' if len(which) > 4 else ''}; "
                "each chosen and rejected sequence needs at least one",
            )

    @staticmethod
    def _precomputed_reference(ref_logps, p, device):
        """Precomputed reference log-probs in canonical order [2P]: a [2P] tensor, chosen first, or a
        (chosen [P], rejected [P]) pair of tensors. Other containers (lists of numbers, numpy arrays)
        are refused like every other non-tensor input, rather than guessed at."""
        if ref_logps is None:
            return None
        if isinstance(ref_logps, (tuple, list)):
            if len(ref_logps) != 2 or not all(isinstance(r, torch.Tensor) for r in ref_logps):
                kinds = sorted({type(r).__name__ for r in ref_logps})
                refuse(
                    "ref_logps",
                    f"a {type(ref_logps).__name__} must be (chosen, rejected): two tensors of shape "
                    f"({p},); got {len(ref_logps)} items of type {', '.join(kinds)}",
                )
            if any(r.shape != (p,) for r in ref_logps):
                refuse(
                    "ref_logps",
                    f"(chosen, rejected) must both have shape ({p},) for {p} pairs; got "
                    f"{[tuple(r.shape) for r in ref_logps]}",
                )
            ref_logps = torch.cat([r.to(ref_logps[0].device) for r in ref_logps])
        elif not isinstance(ref_logps, torch.Tensor):
            refuse(
                "ref_logps",
                f"expected a torch.Tensor of shape ({2 * p},) or a (chosen, rejected) tuple of "
                f"tensors, got {type(ref_logps).__name__}",
            )
        if ref_logps.shape != (2 * p,):
            refuse(
                "ref_logps", f"expected shape ({2 * p},) (chosen first, then rejected), got {tuple(ref_logps.shape)}"
            )
        if not ref_logps.is_floating_point():
            refuse("ref_logps", f"expected a floating dtype, got {ref_logps.dtype}")
        ref = ref_logps.detach().to(device=device, dtype=torch.float32)
        if not bool(torch.isfinite(ref).all()):
            refuse("ref_logps", "must be finite (log-probs of sequences the reference can produce)")
        return ref

    def _reference(self, lay, ref_hidden, ref_weight, ref_bias, ref, weight, bias):
        """Reference sequence log-probs [2P] in canonical order: `ref` if given, else from ref_hidden."""
        if ref is not None or ref_hidden is None:
            return ref
        p = lay.num_pairs
        head_w, head_b = (weight, bias) if ref_weight is None else (ref_weight, ref_bias)
        with torch.no_grad():
            tok = linear_logprobs(
                ref_hidden.reshape(-1, ref_hidden.shape[-1]), head_w, lay.labels, bias=head_b, **self.head
            )
        return torch.zeros(2 * p, dtype=torch.float32, device=tok.device).index_add_(0, lay.seq, tok)

    def _fused(self, lay, weight, bias, ref, lengths):
        needs = [torch.is_grad_enabled() and t is not None and t.requires_grad for t in (lay.hidden, weight, bias)]
        engine = _FusedEngine(
            layout=lay,
            kept=(lay.labels != self.ignore_index).nonzero().squeeze(1),
            ref_logps=ref,
            lengths=lengths,
            loss_fn=self._pair_losses,
            nll_weight=self.nll_weight,
            temperature=self.temperature,
            softcap=self.softcap,
            group_rows=head.chunk_rows(weight.shape[0], self.group_bytes),
            need_grads=tuple(needs),
        )
        loss = _FusedStep.apply(lay.hidden, weight, bias, engine)
        return loss, engine.seq_logps, engine.pair_losses, engine.nll, ref

    def _recompute(self, lay, weight, bias, ref, lengths, ref_hidden, ref_weight, ref_bias):
        p = lay.num_pairs
        if ref_hidden is not None:
            tok, ref_tok = linear_logprobs_with_reference(
                lay.hidden,
                weight,
                lay.labels,
                ref_hidden.reshape(-1, ref_hidden.shape[-1]),
                ref_weight,
                bias=bias,
                ref_bias=ref_bias,
                **self.head,
            )
            ref = torch.zeros(2 * p, dtype=torch.float32, device=tok.device).index_add_(0, lay.seq, ref_tok)
        else:
            tok = linear_logprobs(lay.hidden, weight, lay.labels, bias=bias, **self.head)
        seq_logps = tok.new_zeros(2 * p).index_add(0, lay.seq, tok)
        chosen_mask = (lay.seq < p) & (lay.labels != self.ignore_index)
        nll = -(tok * chosen_mask).sum() / chosen_mask.sum().clamp(min=1)
        losses = self._pair_losses(
            Pairs(
                seq_logps[:p],
                seq_logps[p:],
                None if ref is None else ref[:p],
                None if ref is None else ref[p:],
                lengths[:p],
                lengths[p:],
            )
        )
        return losses.mean() + self.nll_weight * nll, seq_logps, losses, nll, ref

    def _output(self, loss, seq_logps, losses, nll, ref, lengths) -> PreferenceOutput:
        p = seq_logps.shape[0] // 2
        beta = self.objective.params.beta
        if all(t in REFERENCE_FREE for t in self.loss_types):  # SimPO, ORPO: β × mean log-prob
            rewards = beta * seq_logps / lengths
        else:  # β × log-ratio; the reference is 0 when reference-free (CPO style), and sums stay sums
            rewards = beta * (seq_logps if ref is None else seq_logps - ref)
            if self.average_logprobs:
                rewards = rewards / lengths
        chosen, rejected = rewards[:p], rewards[p:]
        return PreferenceOutput(
            loss=loss,
            losses=losses,
            chosen_rewards=chosen,
            rejected_rewards=rejected,
            margins=chosen - rejected,
            reward_accuracy=(chosen > rejected).float().mean(),
            chosen_logps=seq_logps[:p],
            rejected_logps=seq_logps[p:],
            nll=nll,
        )
