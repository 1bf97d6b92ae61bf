"""Token log-probs when the LM head is split by vocabulary across a tensor-parallel group.

Each rank holds rows [rank·V/P, (rank+1)·V/P) of the head weight and the same hidden states. The
log-sum-exp is assembled from per-rank maxima and sums (two all-reduces over the group, plus one
for the target logit), so no rank ever holds more than its own `rows × V/P` logits, and those only
one chunk of rows at a time; the backward recomputes them. The hidden-state gradient is summed over
the group; each rank's weight gradient is its own shard's.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed import ProcessGroup

from rftfast.ops import head
from rftfast.ops.head import CHUNK_BYTES
from rftfast.ops.logprob import IGNORE_INDEX


def vocab_parallel_logprobs(
    hidden: Tensor,
    weight_shard: Tensor,
    labels: Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    group: ProcessGroup | None = None,
) -> Tensor:
    """log p(labels[i] | hidden[i]) over the whole vocabulary, from this rank's `weight_shard` [V/P, H].

    `labels` are global token ids; every rank of `group` passes the same `hidden` and `labels` and an
    equal-sized shard. Ignored positions give 0. Returns fp32 (fp64 for fp64 inputs), computed in that
    precision whatever the autocast state. Differentiable in `hidden` and `weight_shard`.
    """
    if hidden.dim() != 2 or weight_shard.dim() != 2 or hidden.shape[1] != weight_shard.shape[1]:
        raise ValueError(
            f"hidden [N, H] and weight_shard [V/P, H] expected, got {tuple(hidden.shape)} and "
            f"{tuple(weight_shard.shape)}"
        )
    if labels.shape != hidden.shape[:1]:
        raise ValueError(f"labels: shape {tuple(labels.shape)} does not match hidden's {hidden.shape[0]} rows")
    with torch.autocast(hidden.device.type, enabled=False):  # fp32 (or fp64) math in both directions
        return _VocabParallelLogprobs.apply(hidden, weight_shard, labels, group, ignore_index)


def _rows_per_chunk(shard_rows: int) -> int:
    return max(1, CHUNK_BYTES // (4 * max(shard_rows, 1)))


def _all_reduce(t: Tensor, op, group) -> Tensor:
    if dist.is_initialized() and dist.get_world_size(group) > 1:
        dist.all_reduce(t, op=op, group=group)
    return t


def _local_targets(labels: Tensor, start: int, rows: int, ignore_index: int):
    """(index into this shard, whether the label lives in this shard) for each label."""
    local = labels - start
    mine = (labels != ignore_index) & (local >= 0) & (local < rows)
    return local.clamp(0, rows - 1), mine


class _VocabParallelLogprobs(torch.autograd.Function):
    @staticmethod
    @head.autocast_off
    def forward(ctx, hidden, weight, labels, group, ignore_index):
        rank = dist.get_rank(group) if dist.is_initialized() else 0
        rows = weight.shape[0]
        start = rank * rows
        index, mine = _local_targets(labels, start, rows, ignore_index)
        n = hidden.shape[0]
        lse = torch.empty(
            n, dtype=torch.float32 if hidden.dtype != torch.float64 else torch.float64, device=hidden.device
        )
        target = torch.zeros_like(lse)
        step = _rows_per_chunk(rows)
        w = weight.to(lse.dtype)
        for a in range(0, n, step):  # one pass over this shard: its own log-sum-exp and target logits
            logits = hidden[a : a + step].to(lse.dtype) @ w.T
            lse[a : a + step] = logits.logsumexp(dim=1)
            rows_here = torch.arange(logits.shape[0], device=logits.device)
            target[a : a + step] = torch.where(mine[a : a + step], logits[rows_here, index[a : a + step]], 0.0)
        # The group's log-sum-exp from the shards': log Σ_r exp(lse_r), stabilised by the largest.
        maxima = _all_reduce(lse.clone(), dist.ReduceOp.MAX, group)
        lse = _all_reduce((lse - maxima).exp(), dist.ReduceOp.SUM, group)
        _all_reduce(target, dist.ReduceOp.SUM, group)
        lse = lse.log() + maxima
        keep = labels != ignore_index
        out = torch.where(keep, target - lse, 0.0)
        ctx.save_for_backward(hidden, weight, labels, lse)
        ctx.group, ctx.ignore_index, ctx.start = group, ignore_index, start
        return out  # fp32 (fp64 for fp64 inputs), like linear_logprobs: sequence sums keep their precision

    @staticmethod
    @head.autocast_off
    def backward(ctx, grad_out):
        hidden, weight, labels, lse = ctx.saved_tensors
        rows = weight.shape[0]
        index, mine = _local_targets(labels, ctx.start, rows, ctx.ignore_index)
        g = torch.where(labels != ctx.ignore_index, grad_out.to(lse.dtype), 0.0)
        grad_hidden = torch.zeros(hidden.shape, dtype=lse.dtype, device=hidden.device)
        grad_weight = torch.zeros(weight.shape, dtype=lse.dtype, device=weight.device)
        w = weight.to(lse.dtype)
        step = _rows_per_chunk(rows)
        for a in range(0, hidden.shape[0], step):
            h = hidden[a : a + step].to(lse.dtype)
            # d logp / d logits = onehot(label) - softmax: the softmax part on this shard's columns.
            grad_logits = -(h @ w.T - lse[a : a + step, None]).exp() * g[a : a + step, None]
            rows_here = torch.arange(h.shape[0], device=h.device)
            grad_logits[rows_here, index[a : a + step]] += torch.where(mine[a : a + step], g[a : a + step], 0.0)
            grad_hidden[a : a + step] = grad_logits @ w
            grad_weight += grad_logits.T @ h
        _all_reduce(grad_hidden, dist.ReduceOp.SUM, ctx.group)
        return grad_hidden.to(hidden.dtype), grad_weight.to(weight.dtype), None, None, None
