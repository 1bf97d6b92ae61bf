"""Preference optimisation on step-level pairs with `FusedDPOLoss`.

A pair (`rftfast.mcts.Pair`) is a shared prefix (prompt + the answer so far) and two continuations
that differ in one step. Each continuation is scored on its own tokens only. The reference log-probs
are computed once per iteration, in one no-grad pass, before the policy moves (or from a frozen copy
per step).
"""

from __future__ import annotations

import copy
import dataclasses
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from rftfast import distributed
from rftfast.losses import FusedDPOLoss, ObjectiveParams
from rftfast.mcts import Pair
from rftfast.ops.logprob import sequence_logprobs
from rftfast.train.batching import pad_batch
from rftfast.train.loop import StepLogger, optimise
from rftfast.train.model_io import hidden_states, lm_head_weight
from rftfast.train.runtime import TrainConfig, autocast

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class PreferenceConfig(ObjectiveParams):
    """The objective (`loss_type`, with the parameters of `rftfast.losses.ObjectiveParams`: beta,
    label_smoothing, gamma, discopop_tau) and how long and how fast it is optimised."""

    loss_type: str = "sigmoid"
    nll_weight: float = 1.0  # the chosen steps' NLL beside the preference loss keeps the policy on the data
    lr: float = 5e-5
    epochs: float = 2.0
    batch_size: int = 8
    reference: str = "precomputed"  # "precomputed" (one pass per iteration) or "frozen" (a copy, per step)

    def loss(self) -> FusedDPOLoss:
        """The loss this config names (ValueError naming a bad option)."""
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(ObjectiveParams)}
        return FusedDPOLoss(self.loss_type, nll_weight=self.nll_weight, **params)


def pair_batch(pairs: Sequence[Pair], pad_id: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Chosen rows first, then rejected rows (the layout FusedDPOLoss expects)."""
    seqs = [p.prompt_ids + p.chosen_ids for p in pairs] + [p.prompt_ids + p.rejected_ids for p in pairs]
    starts = [len(p.prompt_ids) for p in pairs] * 2
    return pad_batch(seqs, starts, pad_id, device)


@torch.no_grad()
def reference_logps(
    model: PreTrainedModel,
    pairs: Sequence[Pair],
    pad_id: int,
    batch_size: int,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
) -> torch.Tensor:
    """[P, 2] summed log-probs of (chosen, rejected) continuations under `model`, in one pass (split
    across ranks when several processes run, and gathered)."""
    # fp32 log-probs (a float64 model keeps float64: the equivalence tests run in it)
    dtype = torch.promote_types(next(model.parameters()).dtype, torch.float32)
    local = distributed.shard(range(len(pairs)))
    out = []
    for start in range(0, len(local), batch_size):
        chunk = [pairs[i] for i in local[start : start + batch_size]]
        batch = pair_batch(chunk, pad_id, device)
        with autocast(device, precision):
            hidden = hidden_states(model, batch["input_ids"], batch["attention_mask"])
        seq = sequence_logprobs(hidden, lm_head_weight(model, hidden.dtype), batch["labels"]).to(dtype)
        out.extend(torch.stack([seq[: len(chunk)], seq[len(chunk) :]], 1).cpu().tolist())
    return torch.tensor(distributed.gather(out), dtype=dtype).reshape(len(pairs), 2)


def train_preference(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Pair],
    cfg: PreferenceConfig,
    seed: int,
    device: str = "cpu",
    train: TrainConfig | None = None,
    log: StepLogger | None = None,
) -> list[dict]:
    """Optimise `model` on `pairs`; returns the metrics of every step (TRL's names).

    `train` sets precision, gradient checkpointing, accumulation and LoRA; `log(step, metrics)` sees
    every step. With accumulation, each micro-batch's loss is weighted by its share of the pairs, so
    the update equals the full batch's for every objective that is a mean over independent pairs (the
    optional NLL term is a mean over each micro-batch's chosen tokens, so it differs slightly, and
    `aot`, which sorts margins across the batch, sees each micro-batch on its own).
    """
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
    loss_fn = cfg.loss()
    steps = max(1, round(cfg.epochs * len(pairs) / cfg.batch_size))

    def micro_loss(module, part, batch):
        out = _pair_loss(module, reference, ref, loss_fn, [pairs[j] for j in part], part, pad, device, train.precision)
        return out.loss, out.metrics()

    return optimise(
        model,
        train,
        _pair_batches(len(pairs), cfg.batch_size, steps, seed),
        micro_loss,
        lr=cfg.lr,
        total_steps=steps,
        warmup_steps=max(1, steps // 10),
        per_item=True,
        desc="preference optimisation",
        log=log,
    )


def _pair_batches(n: int, batch_size: int, steps: int, seed: int) -> Iterator[tuple[list[int], dict]]:
    """`steps` batches of pair indices, drawn without replacement from a reshuffled order (every rank the same)."""
    rng = random.Random(seed)
    order: list[int] = []
    for _ in range(steps):
        idx = []
        for _ in range(min(batch_size, n)):
            if not order:
                order = list(range(n))
                rng.shuffle(order)
            idx.append(order.pop())
        yield idx, {}


def _pair_loss(module, reference, ref, loss_fn, chunk: list[Pair], idx: list[int], pad: int, device, precision):
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
