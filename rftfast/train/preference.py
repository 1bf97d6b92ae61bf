"""Preference optimisation on step-level pairs with `FusedDPOLoss`.

A pair is a shared prefix (prompt + the answer so far) and two continuations that differ in one
step. Each continuation is scored on its own tokens only. The reference log-probs are computed
once per iteration, in one no-grad pass, before the policy moves (or from a frozen copy per step).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence

import torch

from rftfast import distributed
from rftfast.config import PreferenceConfig, TrainConfig
from rftfast.logprob import sequence_logprobs
from rftfast.losses import FusedDPOLoss
from rftfast.train.batching import pad_batch
from rftfast.train.runtime import autocast, gradient_sync, trainable
from rftfast.train.sft import cosine_lr, hidden_states, lm_head_weight, rank_micro_batches


def pair_batch(pairs: Sequence[dict], pad_id: int, device="cpu") -> dict[str, torch.Tensor]:
    """Chosen rows first, then rejected rows (the layout FusedDPOLoss expects)."""
    seqs = [p["prompt_ids"] + p["chosen_ids"] for p in pairs] + [p["prompt_ids"] + p["rejected_ids"] for p in pairs]
    starts = [len(p["prompt_ids"]) for p in pairs] * 2
    return pad_batch(seqs, starts, pad_id, device)


@torch.no_grad()
def reference_logps(model, pairs: Sequence[dict], pad_id: int, batch_size: int, device="cpu",
                    precision: str = "fp32") -> torch.Tensor:
    """[P, 2] summed log-probs of (chosen, rejected) continuations under `model`, in one pass (split
    across ranks when several processes run, and gathered)."""
    # fp32 log-probs (a float64 model keeps float64: the equivalence tests run in it)
    dtype = torch.promote_types(next(model.parameters()).dtype, torch.float32)
    local = distributed.shard(range(len(pairs)))
    out = []
    for start in range(0, len(local), batch_size):
        chunk = [pairs[i] for i in local[start: start + batch_size]]
        batch = pair_batch(chunk, pad_id, device)
        with autocast(device, precision):
            hidden = hidden_states(model, batch["input_ids"], batch["attention_mask"])
        seq = sequence_logprobs(hidden, lm_head_weight(model, hidden.dtype), batch["labels"]).to(dtype)
        out.extend(torch.stack([seq[: len(chunk)], seq[len(chunk):]], 1).cpu().tolist())
    return torch.tensor(distributed.gather(out), dtype=dtype).reshape(len(pairs), 2)


def train_preference(model, tokenizer, pairs: Sequence[dict], cfg: PreferenceConfig, seed: int,
                     device: str = "cpu", train: TrainConfig | None = None,
                     log: Callable[[int, dict], None] | None = None) -> list[dict]:
    """Optimise `model` on `pairs`; returns the metrics of every step (TRL's names).

    `train` sets precision, gradient checkpointing, accumulation and LoRA; `log(step, metrics)` sees
    every step. With accumulation, each micro-batch's loss is weighted by its share of the pairs, so
    the update equals the full batch's for every objective that is a mean over independent pairs (the
    optional NLL term is a mean over each micro-batch's chosen tokens, so it differs slightly, and
    `aot`, which sorts margins across the batch, sees each micro-batch on its own).
    """
    from tqdm.auto import tqdm

    if len(pairs) < distributed.world_size():  # too few to give every rank one (the same on all ranks)
        return []
    train = train or TrainConfig()
    torch.manual_seed(seed)
    pad = tokenizer.pad_token_id
    reference = None
    ref = None
    if cfg.reference == "precomputed":
        ref = reference_logps(model, pairs, pad, cfg.batch_size, device, train.precision)
    else:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    loss_fn = FusedDPOLoss(cfg.loss_type, beta=cfg.beta, gamma=cfg.gamma, nll_weight=cfg.nll_weight)
    steps = max(1, round(cfg.epochs * len(pairs) / cfg.batch_size))
    rng = random.Random(seed)
    order: list[int] = []
    history = []
    with trainable(model, train) as module:
        module.train()
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_lr(s, steps, max(1, steps // 10)))
        for step in tqdm(range(steps), desc="preference optimisation", unit="step", disable=not distributed.is_main()):
            idx = []
            for _ in range(min(cfg.batch_size, len(pairs))):
                if not order:
                    order = list(range(len(pairs)))
                    rng.shuffle(order)
                idx.append(order.pop())
            # Each rank takes its share of the batch; weights by share × world size make the (averaged)
            # gradient equal one process's on the whole batch.
            local = rank_micro_batches(idx, train.gradient_accumulation)
            parts = []
            for i, part in enumerate(local):
                with gradient_sync(module, i == len(local) - 1):
                    out = _pair_loss(module, reference, ref, loss_fn, [pairs[j] for j in part], part, pad, device,
                                     train.precision)
                    (out.loss * (len(part) * distributed.world_size() / len(idx))).backward()
                parts.append((len(part), out.metrics()))
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            lr = optimizer.param_groups[0]["lr"]  # the rate this step uses
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            keys = list(parts[0][1])
            sums = distributed.all_sum([sum(n * m[k] for n, m in parts) for k in keys])
            metrics = {k: v / len(idx) for k, v in zip(keys, sums, strict=True)}
            history.append(metrics)
            if log is not None:
                log(step, {**metrics, "lr": lr})
    return history


def _pair_loss(module, reference, ref, loss_fn, chunk: list[dict], idx: list[int], pad: int, device, precision):
    """The preference loss of one (micro-)batch of pairs, against precomputed or frozen-copy reference."""
    batch = pair_batch(chunk, pad, device)
    with autocast(device, precision):
        hidden = hidden_states(module, batch["input_ids"], batch["attention_mask"])
        if ref is not None:
            kwargs = {"ref_logps": torch.cat([ref[idx, 0], ref[idx, 1]]).to(device)}
        else:
            with torch.no_grad():
                ref_hidden = hidden_states(reference, batch["input_ids"], batch["attention_mask"])
            kwargs = {"ref_hidden": ref_hidden, "ref_weight": lm_head_weight(reference, ref_hidden.dtype)}
    return loss_fn(hidden, lm_head_weight(module, hidden.dtype), batch["labels"], **kwargs)
