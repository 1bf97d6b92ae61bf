"""The optimiser loop every training stage runs, and how a batch is split across ranks and micro-batches.

One loop for SFT and preference optimisation: AdamW (no weight decay) with a linear warm-up then a cosine
learning rate, gradients clipped to norm 1, and each step's batch split into this rank's micro-batches,
whose gradients accumulate (synchronised across ranks only on the last one) into exactly the update one
process would take on the whole batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from rftfast import distributed
from rftfast.train.runtime import TrainConfig, gradient_sync, trainable

if TYPE_CHECKING:
    from transformers import PreTrainedModel

# (module, micro-batch, whole batch) -> (the micro-batch's loss, its metrics as floats)
MicroLoss = Callable[[torch.nn.Module, Sequence, Sequence], tuple[torch.Tensor, dict[str, float]]]
StepLogger = Callable[[int, dict], None]


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def micro_batches(items: Sequence, parts: int) -> list[Sequence]:
    """`items` cut into `parts` contiguous, non-empty, near-equal slices (fewer if there are fewer items)."""
    parts = max(1, min(parts, len(items)))
    bounds = [round(i * len(items) / parts) for i in range(parts + 1)]
    return [items[bounds[i] : bounds[i + 1]] for i in range(parts)]


def rank_micro_batches(batch: Sequence, accumulation: int) -> list[Sequence]:
    """This rank's share of `batch`, cut into micro-batches. Every rank gets the same number of them
    (DDP and FSDP2 need the same forwards on every rank), decided from the batch alone so all agree."""
    world = distributed.world_size()
    if len(batch) < world:
        raise ValueError(f"a batch of {len(batch)} cannot be split across {world} processes")
    return micro_batches(distributed.shard(batch), min(accumulation, len(batch) // world))


def optimise(
    model: PreTrainedModel,
    train: TrainConfig,
    batches: Iterable[tuple[Sequence, dict]],
    micro_loss: MicroLoss,
    *,
    lr: float,
    total_steps: int,
    warmup_steps: int,
    per_item: bool,
    desc: str,
    log: StepLogger | None = None,
) -> list[dict[str, float]]:
    """Take one optimiser step per batch of `batches`; returns every step's metrics (summed over ranks).

    `batches` yields (batch, info): the same batch on every rank (each takes its share) and values to log
    beside the step's metrics (e.g. the curriculum bucket). `micro_loss(module, part, batch)` is called
    on each micro-batch with the module being trained (`model` as `trainable` wraps it for `train`):

    - `per_item=False`: the loss and metrics are the micro-batch's share of the whole batch's (SFT's NLL
      divided by the batch's token count), so they add up over micro-batches and ranks;
    - `per_item=True`: they are means over the micro-batch's items; each is weighted by its share of the
      batch (preference pairs), so the step's metrics are means over the batch.

    Either way the gradients add up to one process's on the whole batch: DDP and FSDP2 average them over
    ranks, so each backward is scaled by the world size. `log(step, metrics)` sees every step, with the
    learning rate it used (`lr`), the gradient's norm before clipping (`grad_norm`) and the batch's info.
    """
    from tqdm.auto import tqdm

    world = distributed.world_size()
    history = []
    with trainable(model, train) as module:
        module.train()
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)  # looked up per call: tests swap it
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_lr(s, total_steps, warmup_steps))
        bar = tqdm(batches, total=total_steps, desc=desc, unit="step", disable=not distributed.is_main())
        for step, (batch, info) in enumerate(bar):
            parts = rank_micro_batches(batch, train.gradient_accumulation)
            shares = []  # (weight, metrics) of each micro-batch
            for i, part in enumerate(parts):
                with gradient_sync(module, i == len(parts) - 1):  # all-reduce once, after the last backward
                    loss, metrics = micro_loss(module, part, batch)
                    (loss * (len(part) * world / len(batch) if per_item else world)).backward()
                shares.append((len(part) if per_item else 1, metrics))
            step_lr = scheduler.get_last_lr()[0]  # the rate this step uses
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))  # before clipping: what the step saw
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            keys = list(shares[0][1])
            sums = distributed.all_sum([sum(w * m[k] for w, m in shares) for k in keys])
            metrics = {k: v / (len(batch) if per_item else 1) for k, v in zip(keys, sums, strict=True)}
            metrics["grad_norm"] = grad_norm
            history.append(metrics)
            if "loss" in metrics:
                bar.set_postfix(**info, loss=f"{metrics['loss']:.3f}")
            if log is not None:
                log(step, {**metrics, "lr": step_lr, **info})
    return history
