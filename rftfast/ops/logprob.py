"""Per-token log-probabilities of labels under a linear head, never materialising N×V logits.

`linear_logprobs(hidden, weight, labels)` is `log_softmax(hidden @ weight.T)[i, labels[i]]` in
fp32, 0 where the label is ignored, differentiable in hidden, weight and bias for any upstream
gradient. Ignored tokens are compacted away before any matmul. Two backends, one semantics,
including which gradients they skip (only those of inputs that need one are computed):

- ``"triton"``: the kernels in `rftfast.kernels`, what "auto" picks on CUDA (on CPU only under
  TRITON_INTERPRET=1).
- ``"torch"``: chunked torch (`rftfast.ops.head`), what "auto" picks elsewhere. The forward keeps one
  chunk of logits at a time and saves only the log-sum-exp; the backward recomputes each chunk.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypedDict, Unpack

import torch
from torch import Tensor

from rftfast.ops import head

BACKENDS = ("auto", "torch", "triton")
# The label of a position that is not scored (prompt, padding): torch's cross-entropy default, so
# labels made for `torch.nn.functional.cross_entropy` or a transformers model work as they are.
IGNORE_INDEX = -100


class HeadOptions(TypedDict, total=False):
    """The keyword options of every log-prob function here and of `FusedDPOLoss`, one home for their meaning.

    - ignore_index: the label of an unscored position, which gives 0 (default `IGNORE_INDEX`).
    - temperature: logits are divided by it before the softmax (default 1.0).
    - softcap: if set, logits become `softcap * tanh(logits / softcap)` (Gemma-2 style; default None).
    - backend: "auto" (Triton on CUDA, torch otherwise), "torch" or "triton".
    - chunk_rows: rows of logits the torch backend holds at once, a positive int (default ~64 MiB worth).
    """

    ignore_index: int
    temperature: float
    softcap: float | None
    backend: str
    chunk_rows: int | None


HEAD_DEFAULTS: HeadOptions = {
    "ignore_index": IGNORE_INDEX,
    "temperature": 1.0,
    "softcap": None,
    "backend": "auto",
    "chunk_rows": None,
}


# ----------------------------------------------------------------------------- validation


def refuse(argument: str, why: str) -> None:
    """Raise the ValueError every input check of the ops and losses uses: the argument, then why."""
    raise ValueError(f"{argument}: {why}")


def head_options(options: Mapping, caller: str) -> HeadOptions:
    """`options` completed with the defaults and checked; an unknown name is a TypeError, as for any keyword."""
    unknown = sorted(set(options) - set(HEAD_DEFAULTS))
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}")
    full: HeadOptions = {**HEAD_DEFAULTS, **options}
    if not (isinstance(full["ignore_index"], int) and not isinstance(full["ignore_index"], bool)):
        refuse("ignore_index", f"must be an int, got {full['ignore_index']!r}")
    check_head_options(full["temperature"], full["softcap"], full["backend"])
    check_chunk_rows(full["chunk_rows"])
    return full


def check_head_inputs(
    hidden: Tensor, weight: Tensor, labels: Tensor, bias: Tensor | None, options: HeadOptions, name: str = "hidden"
) -> None:
    """Raise a ValueError naming the argument for any shape, dtype, device or range problem (the options
    themselves are checked by `head_options`)."""
    for arg, t in ((name, hidden), ("weight", weight), ("labels", labels)):
        if not isinstance(t, Tensor):
            refuse(arg, f"expected a torch.Tensor, got {type(t).__name__}")
    if hidden.dim() != 2:
        refuse(name, f"expected 2-D [N, H], got shape {tuple(hidden.shape)}")
    if weight.dim() != 2:
        refuse("weight", f"expected 2-D [V, H], got shape {tuple(weight.shape)}")
    if labels.dim() != 1 or labels.shape[0] != hidden.shape[0]:
        refuse("labels", f"expected 1-D [N={hidden.shape[0]}], got shape {tuple(labels.shape)}")
    if hidden.shape[1] != weight.shape[1]:
        refuse(name, f"hidden size {hidden.shape[1]} does not match weight's {weight.shape[1]}")
    if not hidden.is_floating_point():
        refuse(name, f"expected a floating dtype, got {hidden.dtype}")
    if weight.dtype != hidden.dtype:
        refuse("weight", f"dtype {weight.dtype} differs from {name}'s {hidden.dtype}")
    if labels.dtype not in (torch.int64, torch.int32):
        refuse("labels", f"expected int64 or int32, got {labels.dtype}")
    for arg, t in ((name, hidden), ("weight", weight), ("labels", labels)):
        if t.device != weight.device:
            refuse(arg, f"on {t.device}, but weight is on {weight.device}")
    if bias is not None:
        if bias.shape != (weight.shape[0],):
            refuse("bias", f"expected shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        if bias.device != weight.device:
            refuse("bias", f"on {bias.device}, but weight is on {weight.device}")
    if options["backend"] == "triton" and weight.device.type != "cuda" and not _triton_interpreted():
        refuse("backend", "'triton' needs CUDA tensors (or TRITON_INTERPRET=1 for testing on CPU)")
    ignore_index = options["ignore_index"]
    kept = labels[labels != ignore_index]
    if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= weight.shape[0]):
        bad = kept[(kept < 0) | (kept >= weight.shape[0])][0].item()
        refuse("labels", f"label {bad} is out of range [0, {weight.shape[0]}) and is not ignore_index={ignore_index}")


def check_head_options(temperature: float, softcap: float | None, backend: str) -> None:
    """The head's options alone (so a module can refuse them when it is built, before any input)."""
    # inf would make every logit 0 (temperature) or NaN (softcap: inf · tanh(0)); NaN poisons all of them.
    if not _finite_positive(temperature):
        refuse("temperature", f"must be > 0 and finite, got {temperature}")
    if softcap is not None and not _finite_positive(softcap):
        refuse("softcap", f"must be > 0 or None, and finite; got {softcap}")
    if backend not in BACKENDS:
        refuse("backend", f"unknown backend {backend!r}; expected one of {BACKENDS}")


def check_chunk_rows(chunk_rows: int | None, name: str = "chunk_rows") -> None:
    if chunk_rows is not None and not (
        isinstance(chunk_rows, int) and not isinstance(chunk_rows, bool) and chunk_rows > 0
    ):
        refuse(name, f"must be a positive int or None, got {chunk_rows!r}")


def _finite_positive(x) -> bool:
    try:
        return not isinstance(x, bool) and math.isfinite(x) and bool(x > 0)
    except TypeError:  # not a real number at all
        return False


def _triton_interpreted() -> bool:
    import os

    return os.environ.get("TRITON_INTERPRET") == "1"


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend == "auto":
        return "triton" if device.type == "cuda" else "torch"
    return backend


# ----------------------------------------------------------------------------- torch backend


class _TorchLinearLogprobs(torch.autograd.Function):
    """Chunked torch: forward saves the log-sum-exp, backward recomputes each chunk's logits.

    `positions` (or None for all rows) selects the rows of `hidden` whose labels count; each chunk
    gathers its own rows, so compaction never copies the whole hidden tensor. With `ref_hidden`
    the reference rows ride along in the same matmul as the policy rows, so each weight read
    serves both; the reference output carries no gradient.
    """

    @staticmethod
    @head.autocast_off
    def forward(ctx, hidden, weight, bias, labels, positions, temperature, softcap, rows, ref_hidden):
        operand = head.fp32_operand(weight)
        k = labels.shape[0]
        logp = hidden.new_empty(k, dtype=torch.float32)
        lse = torch.empty_like(logp)
        ref_logp = torch.empty_like(logp) if ref_hidden is not None else None
        step = rows // 2 if ref_hidden is not None else rows
        buf = hidden.new_empty((rows, weight.shape[0]), dtype=torch.float32)
        for start in range(0, k, step):
            sl = slice(start, min(start + step, k))
            y = labels[sl]
            rows_in = _gather(hidden, positions, sl)
            if ref_hidden is not None:
                rows_in, y = torch.cat([rows_in, _gather(ref_hidden, positions, sl)]), torch.cat([y, y])
            z = buf[: rows_in.shape[0]]
            head.logits_into(z, rows_in, operand, bias, temperature, softcap)
            lp, chunk_lse, _ = head.softmax_(z, y)
            n = sl.stop - sl.start
            logp[sl], lse[sl] = lp[:n], chunk_lse[:n]
            if ref_logp is not None:
                ref_logp[sl] = lp[n:]
        ctx.save_for_backward(hidden, weight, bias, labels, positions, lse, logp)
        ctx.temperature, ctx.softcap, ctx.rows = temperature, softcap, rows
        return _outputs(ctx, logp, ref_logp)

    @staticmethod
    @head.autocast_off
    def backward(ctx, grad_logp, _grad_ref):
        hidden, weight, bias, labels, positions, lse, logp = ctx.saved_tensors
        operand = head.fp32_operand(weight)
        grad_logp = grad_logp.to(torch.float32).contiguous()
        want_hidden, want_weight, want_bias = ctx.needs_input_grad[:3]
        f32 = dict(dtype=torch.float32, device=weight.device)
        grad_hidden = torch.zeros(hidden.shape, **f32) if want_hidden else None
        grad_weight = torch.zeros(weight.shape, **f32) if want_weight else None
        grad_bias = torch.zeros(weight.shape[0], **f32) if want_bias else None
        buf = hidden.new_empty((ctx.rows, weight.shape[0]), dtype=torch.float32)
        for start in range(0, labels.shape[0], ctx.rows):
            sl = slice(start, min(start + ctx.rows, labels.shape[0]))
            h = _gather(hidden, positions, sl)
            z = buf[: h.shape[0]]
            tanh = head.logits_into(z, h, operand, bias, ctx.temperature, ctx.softcap)
            probs = head.probs_from_lse_(z, lse[sl])
            dz = head.logit_grad_(probs, None, labels[sl], grad_logp[sl], logp[sl], ctx.temperature, tanh)
            dh = head.accumulate_head_grads(dz, h, operand, (grad_weight, grad_bias), want_hidden)
            if want_hidden:
                grad_hidden.index_copy_(0, _rows(positions, sl, hidden.device), dh)
        return (
            grad_hidden.to(hidden.dtype) if want_hidden else None,
            grad_weight.to(weight.dtype) if want_weight else None,
            grad_bias.to(bias.dtype) if want_bias else None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def _outputs(ctx, logp, ref_logp):
    """(logp, ref_logp): autograd wants a tensor as the second output even without a reference."""
    if ref_logp is None:
        return logp, logp.new_empty(0)
    ctx.mark_non_differentiable(ref_logp)
    return logp, ref_logp


def _rows(positions: Tensor | None, sl: slice, device) -> Tensor:
    if positions is None:
        return torch.arange(sl.start, sl.stop, device=device)
    return positions[sl]


def _gather(hidden: Tensor, positions: Tensor | None, sl: slice) -> Tensor:
    return hidden[sl] if positions is None else hidden.index_select(0, positions[sl])


# ----------------------------------------------------------------------------- triton backend


class _TritonLinearLogprobs(torch.autograd.Function):
    """Triton kernels: a tiled online log-sum-exp forward and a recomputing backward that forms only
    the gradients `needs_input_grad` asks for, as the torch backend does."""

    @staticmethod
    @head.autocast_off
    def forward(ctx, hidden, weight, bias, labels, temperature, softcap, ref_hidden):
        from rftfast.kernels.linear_logprobs import linear_logprobs_forward

        logp, lse, ref_logp = linear_logprobs_forward(
            hidden, weight, labels, bias=bias, temperature=temperature, softcap=softcap, ref_hidden=ref_hidden
        )
        ctx.save_for_backward(hidden, weight, bias, labels, lse, logp)
        ctx.temperature, ctx.softcap = temperature, softcap
        return _outputs(ctx, logp, ref_logp)

    @staticmethod
    @head.autocast_off
    def backward(ctx, grad_logp, _grad_ref):
        from rftfast.kernels.linear_logprobs import linear_logprobs_backward

        hidden, weight, bias, labels, lse, logp = ctx.saved_tensors
        want_hidden, want_weight, want_bias = ctx.needs_input_grad[:3]
        grad_hidden, grad_weight, grad_bias = linear_logprobs_backward(
            hidden,
            weight,
            labels,
            lse,
            grad_logp.to(torch.float32).contiguous(),
            bias=bias,
            temperature=ctx.temperature,
            softcap=ctx.softcap,
            logp=logp,
            need_hidden=want_hidden,
            need_weight=want_weight,
            need_bias=want_bias,
        )
        return grad_hidden, grad_weight, grad_bias, None, None, None, None


# ----------------------------------------------------------------------------- public API


def _kept_positions(labels: Tensor, ignore_index: int) -> Tensor | None:
    """Indices of the labels that count, or None when all of them do (no gather needed)."""
    keep = labels != ignore_index
    if bool(keep.all()):
        return None
    return keep.nonzero().squeeze(1)


def _run(hidden, weight, labels, bias, options: HeadOptions, ref_hidden=None):
    """Compact, dispatch, scatter back. Returns (logp [N], ref_logp [N] or None)."""
    n = hidden.shape[0]
    temperature, softcap, chunk_rows = float(options["temperature"]), options["softcap"], options["chunk_rows"]
    positions = _kept_positions(labels, options["ignore_index"])
    kept = (labels if positions is None else labels.index_select(0, positions)).to(torch.int64).contiguous()
    if resolve_backend(options["backend"], weight.device) == "triton":
        if positions is not None:  # the kernels take compacted rows
            hidden = hidden.index_select(0, positions)
            ref_hidden = ref_hidden.index_select(0, positions) if ref_hidden is not None else None
        logp, ref_logp = _TritonLinearLogprobs.apply(hidden, weight, bias, kept, temperature, softcap, ref_hidden)
    else:
        rows = chunk_rows if chunk_rows is not None else head.chunk_rows(weight.shape[0])
        if ref_hidden is not None:
            rows = max(2, rows - rows % 2)
        logp, ref_logp = _TorchLinearLogprobs.apply(
            hidden, weight, bias, kept, positions, temperature, softcap, rows, ref_hidden
        )
    if ref_hidden is None:
        ref_logp = None
    if positions is None:
        return logp, ref_logp
    full = logp.new_zeros(n)
    logp = full.index_put((positions,), logp)
    if ref_logp is not None:
        ref_logp = full.index_put((positions,), ref_logp)
    return logp, ref_logp


def linear_logprobs(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    bias: Tensor | None = None,
    **options: Unpack[HeadOptions],
) -> Tensor:
    """Log-probability of each label under `hidden @ weight.T (+ bias)`, fp32 [N].

    Args:
        hidden: [N, H] hidden states (fp32, bf16 or fp16).
        weight: [V, H] head weight, same dtype and device as `hidden`.
        labels: [N] int64/int32 in [0, V), or `ignore_index` (those positions return 0).
        bias: optional [V] head bias.
        options: `HeadOptions` (ignore_index, temperature, softcap, backend, chunk_rows).
    """
    options = head_options(options, "linear_logprobs")
    check_head_inputs(hidden, weight, labels, bias, options)
    return _run(hidden, weight, labels, bias, options)[0]


def linear_logprobs_with_reference(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    ref_hidden: Tensor,
    ref_weight: Tensor | None = None,
    *,
    bias: Tensor | None = None,
    ref_bias: Tensor | None = None,
    **options: Unpack[HeadOptions],
) -> tuple[Tensor, Tensor]:
    """Policy log-probs (with grad) and reference log-probs (without) in one call.

    The labels are checked and compacted once for both. When the reference head *is* the policy
    head (`ref_weight` None or the same tensor, as with LoRA/PEFT), both sets of rows go through
    each weight tile together, so the weight is read once per tile instead of twice.
    """
    options = head_options(options, "linear_logprobs_with_reference")
    check_head_inputs(hidden, weight, labels, bias, options)
    if not isinstance(ref_hidden, Tensor):
        refuse("ref_hidden", f"expected a torch.Tensor, got {type(ref_hidden).__name__}")
    if ref_hidden.shape != hidden.shape:
        refuse("ref_hidden", f"shape {tuple(ref_hidden.shape)} differs from hidden's {tuple(hidden.shape)}")
    if ref_hidden.dtype != hidden.dtype or ref_hidden.device != hidden.device:
        refuse("ref_hidden", f"{ref_hidden.dtype} on {ref_hidden.device}; expected {hidden.dtype} on {hidden.device}")
    shared = (ref_weight is None or ref_weight is weight) and (ref_bias is None or ref_bias is bias)
    if shared:
        return _run(hidden, weight, labels, bias, options, ref_hidden=ref_hidden.detach())
    check_head_inputs(ref_hidden, ref_weight, labels, ref_bias, options, name="ref_hidden")
    logp = _run(hidden, weight, labels, bias, options)[0]
    with torch.no_grad():
        ref = _run(ref_hidden, ref_weight, labels, ref_bias, options)[0]
    return logp, ref


def segment_ids(labels: Tensor, cu_seqlens: Tensor | None) -> tuple[Tensor, int]:
    """Sequence index of each token of flattened input, and the number of sequences.

    Padded labels [B, T] give row indices; packed labels [N] with `cu_seqlens` [S+1] give the
    segment each token falls in.
    """
    if cu_seqlens is None:
        if labels.dim() != 2:
            refuse("labels", f"expected [B, T] for padded input (or pass cu_seqlens), got {tuple(labels.shape)}")
        b, t = labels.shape
        return torch.arange(b, device=labels.device).repeat_interleave(t), b
    if labels.dim() != 1:
        refuse("labels", f"expected [N] with cu_seqlens, got shape {tuple(labels.shape)}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        refuse("cu_seqlens", f"expected 1-D [S+1] with S >= 1, got shape {tuple(cu_seqlens.shape)}")
    cu = cu_seqlens.to(device=labels.device, dtype=torch.int64)
    if int(cu[0]) != 0 or int(cu[-1]) != labels.shape[0] or bool((cu[1:] < cu[:-1]).any()):
        refuse("cu_seqlens", f"must start at 0, be non-decreasing and end at N={labels.shape[0]}; got {cu.tolist()}")
    lengths = cu[1:] - cu[:-1]
    return torch.arange(lengths.numel(), device=labels.device).repeat_interleave(lengths), lengths.numel()


def sequence_lengths(labels: Tensor, cu_seqlens: Tensor | None = None, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Number of counted (non-ignored) labels of each sequence, int64 [S]."""
    seq, s = segment_ids(labels, cu_seqlens)
    kept = (labels.reshape(-1) != ignore_index).to(torch.int64)
    return torch.zeros(s, dtype=torch.int64, device=labels.device).index_add_(0, seq, kept)


def sequence_logprobs(
    hidden: Tensor,
    weight: Tensor,
    labels: Tensor,
    *,
    cu_seqlens: Tensor | None = None,
    average: bool = False,
    bias: Tensor | None = None,
    **options: Unpack[HeadOptions],
) -> Tensor:
    """Summed (or length-averaged) label log-prob of each sequence, fp32 [S].

    Padded input: hidden [B, T, H], labels [B, T]. Packed input: hidden [N, H], labels [N] and
    `cu_seqlens` [S+1] (cumulative sequence lengths starting at 0). Labels are aligned with the
    hidden states (shift them before calling, as for a causal LM); ignored labels do not count.
    """
    options = head_options(options, "sequence_logprobs")
    seq, s = segment_ids(labels, cu_seqlens)
    flat_hidden = hidden.reshape(-1, hidden.shape[-1]) if hidden.dim() == 3 else hidden
    if flat_hidden.shape[0] != seq.shape[0]:
        refuse("hidden", f"shape {tuple(hidden.shape)} does not match labels {tuple(labels.shape)}")
    flat_labels = labels.reshape(-1)
    logp = linear_logprobs(flat_hidden, weight, flat_labels, bias=bias, **options)
    sums = logp.new_zeros(s).index_add(0, seq, logp)
    if not average:
        return sums
    return sums / sequence_lengths(labels, cu_seqlens, options["ignore_index"]).clamp(min=1).to(sums.dtype)
