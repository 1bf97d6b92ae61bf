"""The chunked torch math of a linear LM head: logits, log-sum-exp and logit gradients.

Everything here works on one chunk of rows at a time, in fp32, in place where it can, so a
caller never holds more than `rows × V` floats. Two callers are built from these pieces:

- the ``"torch"`` backend of `linear_logprobs`, which "auto" picks off CUDA;
- the ``"fused"`` strategy of `FusedDPOLoss` (its default wherever the objective is a sum of
  per-pair terms), which runs this torch code on every device, CUDA included.

On CUDA the rest of the head, `linear_logprobs` under "auto" and with it `FusedDPOLoss`'s
``"recompute"`` strategy and reference forward, runs the Triton kernels (`rftfast.kernels`).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

# Bytes of fp32 logits one chunk may hold. 512 rows × 32k vocab is 64 MiB: large enough that the
# chunk's matrix product runs at full speed on CPU (smaller chunks measured 10-15% slower), small
# enough that peak memory stays flat in the number of tokens.
CHUNK_BYTES = 64 * 2**20
MIN_CHUNK_ROWS, MAX_CHUNK_ROWS = 16, 1024


def chunk_rows(vocab_size: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Rows per chunk so that one fp32 chunk of logits takes about `chunk_bytes`."""
    rows = chunk_bytes // (4 * max(vocab_size, 1))
    return int(min(MAX_CHUNK_ROWS, max(MIN_CHUNK_ROWS, rows)))


def fp32_operand(weight: Tensor) -> Tensor:
    """The head weight as the matmul operand that yields fp32 logits.

    CPU has no low-precision matmul with an fp32 result, so a bf16/fp16 weight is upcast once per
    call (a transient V×H fp32 copy). On GPU the native dtype is kept: the matmul runs on the tensor
    cores with fp32 accumulation, and `logits_into` widens its bf16/fp16 output to fp32 (the fused
    strategy's logits on GPU, as in TRL and Liger; the Triton kernels keep fp32 logits).
    """
    if weight.dtype != torch.float32 and weight.device.type == "cpu":
        return weight.float()
    return weight


def logits_into(
    out: Tensor, hidden_rows: Tensor, weight: Tensor, bias: Tensor | None, temperature: float, softcap: float | None
) -> Tensor | None:
    """Write the processed fp32 logits of `hidden_rows` into `out` [rows, V].

    Returns tanh(z / softcap), z the logits after bias and temperature, when a softcap is set (the
    backward needs 1 - tanh²), else None.
    """
    if weight.dtype == torch.float32:
        torch.mm(hidden_rows.to(torch.float32), weight.t(), out=out)
    else:
        out.copy_(torch.mm(hidden_rows.to(weight.dtype), weight.t()))
    if bias is not None:
        out.add_(bias.to(torch.float32))
    if temperature != 1.0:
        out.div_(temperature)
    if softcap is None:
        return None
    tanh = torch.tanh(out.div_(softcap))
    torch.mul(tanh, softcap, out=out)
    return tanh


def log_softmax_parts(label_logit: Tensor, row_max: Tensor, rest: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(logp, lse, log_sum) of rows given the label's logit, the row max and rest = Σ_{v≠label} exp(z_v - max).

    Σ_v exp(z_v - max) = e + rest with e = exp(label - max), and log_sum is its log. A confident token's label
    is the max (e = 1) and rest is tiny: 1 + rest in fp32 rounds away anything under 6e-8, so its logp
    (≈ -rest, -8e-7 at a logit margin of 16) would come out 0, and subtracting a rounded lse from the label
    logit loses it again. log1p(rest + expm1(label - max)) keeps rest to full relative precision; when the
    label is not the max, rest >= 1 (it holds the max's own term) and no small term is at stake.
    """
    shifted = label_logit - row_max
    log_sum = torch.log1p(rest + torch.expm1(shifted))
    return shifted - log_sum, row_max + log_sum, log_sum


def softmax_(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Label log-probs and log-sum-exp of each row; `logits` becomes exp(z - rowmax) in place.

    Returns (logp, lse, inv_sum), each fp32 [rows]; softmax = logits * inv_sum[:, None]. Working in
    place spares the `rows × V` temporary that `torch.logsumexp` allocates, and the one exp pass
    serves both the log-sum-exp and the gradient. The label's own term is left out of the sum (and
    put back after) so that `log_softmax_parts` can keep a confident token's log-prob exact.
    """
    at_label = labels[:, None]
    label_logits = logits.gather(1, at_label).squeeze(1)
    row_max = logits.amax(dim=1)
    logits.sub_(row_max[:, None]).exp_()
    label_terms = logits.gather(1, at_label)
    rest = logits.scatter_(1, at_label, 0.0).sum(dim=1)
    logits.scatter_(1, at_label, label_terms)
    logp, lse, log_sum = log_softmax_parts(label_logits, row_max, rest)
    return logp, lse, torch.exp(-log_sum)


def probs_from_lse_(logits: Tensor, lse: Tensor) -> Tensor:
    """In place: logits become softmax probabilities, given each row's log-sum-exp."""
    return logits.sub_(lse[:, None]).exp_()


def logit_grad_(
    probs: Tensor,
    row_scale: Tensor | None,
    labels: Tensor,
    grad_logp: Tensor,
    label_logp: Tensor,
    temperature: float,
    tanh: Tensor | None,
) -> Tensor:
    """Turn `probs` in place into d(Σ grad_logp·logp)/d(raw logits) and return it.

    `probs * row_scale` is the softmax (row_scale None: already normalised). d logp_i / d z_i is
    onehot(y_i) - softmax(z_i); then through the softcap (1 - tanh²) and the temperature (1/τ).
    The label's entry 1 - p_y is taken as -expm1(logp_y) from the label's log-prob: 1 - p_y from a
    p_y that rounds to 1 would be 0 or eps for a confident token, and losses such as ORPO's scale
    that entry by a large upstream gradient. The raw logits are `hidden @ W.T + bias`, so the
    result feeds both gradient matmuls.
    """
    scale = -grad_logp if row_scale is None else -grad_logp * row_scale
    grad = probs.mul_(scale[:, None])
    grad.scatter_(1, labels[:, None], (-grad_logp * torch.expm1(label_logp))[:, None])
    if tanh is not None:
        grad.mul_(tanh.mul_(tanh).neg_().add_(1.0))
    if temperature != 1.0:
        grad.div_(temperature)
    return grad


def accumulate_head_grads(
    grad_logits: Tensor,
    hidden_rows: Tensor,
    weight: Tensor,
    buffers: tuple[Tensor | None, Tensor | None],
    want_hidden: bool = True,
) -> Tensor | None:
    """Add this chunk's weight and bias gradients into their fp32 `buffers` (grad_weight, grad_bias; None:
    not wanted, e.g. a frozen head under LoRA, which saves a whole matmul); return the chunk's hidden
    gradient in fp32, or None when `want_hidden` is False."""
    grad_weight, grad_bias = buffers
    if grad_weight is not None:
        grad_weight.addmm_(grad_logits.t(), hidden_rows.to(torch.float32))
    if grad_bias is not None:
        grad_bias.add_(grad_logits.sum(0))
    if not want_hidden:
        return None
    if weight.dtype == torch.float32:
        return torch.mm(grad_logits, weight)
    return torch.mm(grad_logits.to(weight.dtype), weight).float()


def autocast_off(step):
    """For an autograd Function's `forward` or `backward` that keeps its own precision (fp32 softmax
    statistics and gradient buffers, matmuls in the operands' dtype): run it with autocast off, where a
    trainer's bf16 region would otherwise recast its matmuls and mix dtypes in its buffers."""

    @functools.wraps(step)
    def run(ctx, *args):
        device = next((a.device.type for a in args if isinstance(a, Tensor)), "cpu")
        if not torch.is_autocast_enabled(device):
            return step(ctx, *args)
        with torch.autocast(device, enabled=False):
            return step(ctx, *args)

    return run
