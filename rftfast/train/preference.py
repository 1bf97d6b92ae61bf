"""Preference optimisation on step-level pairs with `FusedDPOLoss`.

A pair (`rftfast.mcts.Pair`) is a shared prefix (prompt + the answer so far) and two continuations
that differ in one step. Each continuation is scored on its own tokens only. The reference log-probs
are computed once per iteration, in one no-grad pass, before the policy moves (or from a frozen copy
per step). With `packing` (the default) a batch's sequences are one token tree (`rftfast.train.packing`):
the prefix a pair's two steps share, and the prompt its record's other pairs share, are computed once.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from rftfast import distributed
from rftfast.data.chat import Example
from rftfast.losses import FusedDPOLoss, ObjectiveParams
from rftfast.mcts import Pair
from rftfast.ops.logprob import sequence_logprobs
from rftfast.train.batching import pad_batch
from rftfast.train.loop import StepLogger, optimise
from rftfast.train.model_io import hidden_states, lm_head_weight
from rftfast.train.packing import TokenTree, pack_trees, packed_attention, packed_hidden_states, resolve_attention
from rftfast.train.runtime import TrainConfig, autocast
from rftfast.train.sft import answer_kl, answer_nll

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
    # Each step also scores the answers of `replay` training examples per pair (by `replay_loss`, weighted by
    # `replay_weight`): pairs are about the policy's mistakes, and training on them alone drifts what it already
    # does right (no-call answers turned into calls; benchmarks/RESULTS.md §8). 0: pairs only.
    replay: float = 0.0
    # What the replayed answers are fitted by: "nll", their ground truth's NLL; "kl", KL(start policy || policy) over
    # their answer tokens, which holds the policy's distribution there where the stage found it instead of pulling it
    # toward the truth (it keeps the no-call answers a first stage otherwise breaks; benchmarks/RESULTS.md §8). "kl"
    # keeps a frozen copy of the model for the stage (the reference's, with reference="frozen").
    replay_loss: str = "nll"
    replay_weight: float = 1.0  # the replay term's weight beside the preference loss
    # Each iteration also trains on the pairs of up to this many iterations before it. A stage that fixes one
    # deficiency tends to break a record the last stage fixed (benchmarks/RESULTS.md §8); the earlier pairs
    # keep those corrections in the objective. 0: the iteration's own pairs only.
    pair_history: int = 0
    packing: bool = True  # each batch as one token tree (shared prefixes once); False: padded rows

    def loss(self) -> FusedDPOLoss:
        """The loss this config names (ValueError naming a bad option)."""
        params = {f.name: getattr(self, f.name) for f in dataclasses.fields(ObjectiveParams)}
        return FusedDPOLoss(self.loss_type, nll_weight=self.nll_weight, **params)


def pair_batch(pairs: Sequence[Pair], pad_id: int, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Chosen rows first, then rejected rows (the layout FusedDPOLoss expects)."""
    seqs = [p.prompt_ids + p.chosen_ids for p in pairs] + [p.prompt_ids + p.rejected_ids for p in pairs]
    starts = [len(p.prompt_ids) for p in pairs] * 2
    return pad_batch(seqs, starts, pad_id, device)


def pair_tree(pairs: Sequence[Pair]) -> TokenTree:
    """The pairs' sequences as one token tree, chosen ones first, then rejected (FusedDPOLoss's order)."""
    seqs = [p.prompt_ids + p.chosen_ids for p in pairs] + [p.prompt_ids + p.rejected_ids for p in pairs]
    return TokenTree(seqs, [len(p.prompt_ids) for p in pairs] * 2)


class _PairScorer:
    """The hidden states and labels of a batch of pairs, padded or packed, and the loss's layout for them."""

    def __init__(self, pad_id: int, device, packing: bool, attention: str) -> None:
        self.pad_id, self.device, self.packing = pad_id, device, packing
        self.attention = resolve_attention(attention, torch.device(device), branched=True) if packing else None

    def passes(self, *models: torch.nn.Module) -> contextlib.AbstractContextManager:
        """The attention every model's pass (forward and backward) runs under."""
        stack = contextlib.ExitStack()
        for model in models if self.packing else ():
            stack.enter_context(packed_attention(model, self.attention))
        return stack

    def batch(self, pairs: Sequence[Pair]):
        if self.packing:
            return pack_trees([pair_tree(pairs)], self.device)
        return pair_batch(pairs, self.pad_id, self.device)

    def hidden(self, model: torch.nn.Module, batch) -> torch.Tensor:
        if self.packing:
            return packed_hidden_states(model, batch, self.attention)
        return hidden_states(model, batch["input_ids"], batch["attention_mask"])

    def layout(self, batch) -> dict:
        """`labels` (and `cu_seqlens` when packed) as FusedDPOLoss and `sequence_logprobs` take them."""
        if self.packing:
            return {"labels": batch.labels, "cu_seqlens": batch.cu_seqlens}
        return {"labels": batch["labels"]}


@torch.no_grad()
def reference_logps(
    model: PreTrainedModel,
    pairs: Sequence[Pair],
    pad_id: int,
    batch_size: int,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    *,
    packing: bool = True,
    attention: str = "auto",
) -> torch.Tensor:
    """[P, 2] summed log-probs of (chosen, rejected) continuations under `model`, in one pass (split
    across ranks when several processes run, and gathered)."""
    # fp32 log-probs (a float64 model keeps float64: the equivalence tests run in it)
    dtype = torch.promote_types(next(model.parameters()).dtype, torch.float32)
    scorer = _PairScorer(pad_id, device, packing, attention)
    local = distributed.shard(range(len(pairs)))
    out = []
    with scorer.passes(model):
        for start in range(0, len(local), batch_size):
            chunk = [pairs[i] for i in local[start : start + batch_size]]
            batch = scorer.batch(chunk)
            with autocast(device, precision):
                hidden = scorer.hidden(model, batch)
            seq = sequence_logprobs(hidden, lm_head_weight(model, hidden.dtype), **scorer.layout(batch)).to(dtype)
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
    replay: Sequence[Example] = (),
) -> list[dict]:
    """Optimise `model` on `pairs`; returns the metrics of every step (TRL's names).

    With `cfg.replay`, each step also scores that many `replay` examples per pair (drawn with the step's seed) by
    `cfg.replay_loss` on their answers, added to the loss as `replay_nll` or `replay_kl`.

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
        ref = reference_logps(
            model, pairs, pad, cfg.batch_size, device, train.precision, packing=cfg.packing, attention=train.attention
        )
    else:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    anchor = None  # the stage's starting policy, which replay_loss="kl" holds the replayed answers to
    if replay and cfg.replay > 0 and cfg.replay_loss == "kl":
        anchor = reference if reference is not None else copy.deepcopy(model).eval().requires_grad_(False)
    loss_fn = cfg.loss()
    steps = max(1, round(cfg.epochs * len(pairs) / cfg.batch_size))
    scorer = _PairScorer(pad, device, cfg.packing, train.attention)

    rng = random.Random(seed + 1)
    replayed: list[Example] = []  # this step's replay examples
    replay_key = f"replay_{cfg.replay_loss}"

    def batches():
        for idx, info in _pair_batches(len(pairs), cfg.batch_size, steps, seed):
            if replay and cfg.replay > 0:
                replayed[:] = rng.sample(list(replay), min(len(replay), max(1, round(cfg.replay * len(idx)))))
            yield idx, info

    def micro_loss(module, part, batch):
        out = _pair_loss(module, reference, ref, loss_fn, scorer, [pairs[j] for j in part], part, train.precision)
        loss, metrics = out.loss, out.metrics()
        if replayed and part[0] == batch[0]:  # once per step, in the micro-batch that holds the batch's first pair
            rows = pad_batch([e.input_ids for e in replayed], [e.answer_start for e in replayed], pad, device)
            with autocast(device, train.precision):
                term, _ = answer_kl(module, anchor, rows) if anchor is not None else answer_nll(module, rows)
            share = len(part) / len(batch)  # optimise weighs this micro-batch's loss by its share: undo it
            loss = loss + cfg.replay_weight * term / share
            metrics[replay_key] = float(term.detach()) / share  # the term itself, before its weight
            metrics["loss"] += cfg.replay_weight * metrics[replay_key]  # the step's whole loss, as it is optimised
        elif replayed:
            metrics[replay_key] = 0.0
        return loss, metrics

    with scorer.passes(model, *([reference] if reference is not None else [])):
        return optimise(
            model,
            train,
            batches(),
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


def _pair_loss(module, reference, ref, loss_fn, scorer: _PairScorer, chunk: list[Pair], idx: list[int], precision):
    """The preference loss of one (micro-)batch of pairs, against precomputed or frozen-copy reference."""
    batch = scorer.batch(chunk)
    with autocast(scorer.device, precision):
        hidden = scorer.hidden(module, batch)
        if ref is not None:
            kwargs = {"ref_logps": torch.cat([ref[idx, 0], ref[idx, 1]]).to(scorer.device)}
        else:
            with torch.no_grad():
                ref_hidden = scorer.hidden(reference, batch)
            kwargs = {"ref_hidden": ref_hidden, "ref_weight": lm_head_weight(reference, ref_hidden.dtype)}
    return loss_fn(hidden, lm_head_weight(module, hidden.dtype), **scorer.layout(batch), **kwargs)
