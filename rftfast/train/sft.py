"""Supervised fine-tuning on answer tokens, with the easy-to-hard curriculum.

The loss is the mean negative log-likelihood of the answer tokens, computed from the model's last
hidden states with `linear_logprobs`, so the `tokens × vocab` logits are never materialised. With
`packing` a step's examples are one token tree (`rftfast.train.packing`): no padding, and the prefix they
share (the system preamble) computed once; the examples of each step are the same.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from rftfast.data.chat import Example
from rftfast.ops.logprob import IGNORE_INDEX, linear_logprobs
from rftfast.train.batching import pad_batch
from rftfast.train.loop import StepLogger, optimise
from rftfast.train.model_io import hidden_states, lm_head_weight
from rftfast.train.packing import (
    PackedBatch,
    TokenTree,
    pack_trees,
    packed_attention,
    packed_hidden_states,
    resolve_attention,
)
from rftfast.train.runtime import TrainConfig, autocast

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class WarmupConfig:
    """The warm-up: its curriculum (difficulty, buckets, replay) and the SFT loop's settings."""

    order: str = "easy_to_hard"  # or "shuffled" (the ablation)
    difficulty: str = "level"  # "level" (tool world), "steps" (calls and arguments), or "perplexity"
    buckets: int = 3
    epochs: float = 8.0  # passes over the warm-up data, spread over the buckets
    replay: float = 0.25  # fraction of each later bucket's batches drawn from earlier buckets
    lr: float = 6e-3
    batch_size: int = 16
    warmup_steps: int = 20
    length_group: int = 16  # sort this many batches' examples by length before batching (less padding); 1: off
    # Each step's examples as one token tree (no padding, the shared preamble once) instead of length-grouped
    # padded rows. Off by default: the examples share little (1.14x fewer positions), so on CPU it runs at
    # 1.02x the steps/s (21% less peak memory), and a whole default run with it was no faster (453 s of
    # warm-up against 441 s); padded, the default run's documented figures stay comparable
    # (benchmarks/RESULTS.md §6, §7).
    packing: bool = False


def answer_nll(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor] | PackedBatch,
    denominator: int | None = None,
    attention: str = "tree",
) -> tuple[torch.Tensor, int]:
    """(NLL of the answer tokens divided by `denominator`, default their count; their count).

    `batch` is `pad_batch`'s padded rows or a `PackedBatch` (run inside `packed_attention(model,
    attention)`). A micro-batch passes the whole batch's token count as `denominator`, so the
    micro-batches' gradients add up to the full batch's.
    """
    if isinstance(batch, PackedBatch):
        hidden, labels = packed_hidden_states(model, batch, attention), batch.labels
    else:
        hidden = hidden_states(model, batch["input_ids"], batch["attention_mask"])
        hidden, labels = hidden.reshape(-1, hidden.shape[-1]), batch["labels"].reshape(-1)
    logp = linear_logprobs(hidden, lm_head_weight(model, hidden.dtype), labels)
    n = int((labels != IGNORE_INDEX).sum())
    return -logp.float().sum() / max(denominator or n, 1), n


def answer_kl(
    model: torch.nn.Module, anchor: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, int]:
    """(KL(anchor || model) of the next-token distributions at the answer tokens of `pad_batch`'s rows, their mean;
    their count). The logits are made for the answer positions only."""
    keep = batch["labels"] != IGNORE_INDEX

    def answer_logprobs(m: torch.nn.Module) -> torch.Tensor:
        hidden = hidden_states(m, batch["input_ids"], batch["attention_mask"])[keep]
        logits = hidden @ lm_head_weight(m, hidden.dtype).T
        return torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)  # float64 stays

    with torch.no_grad():
        target = answer_logprobs(anchor)
    logp = answer_logprobs(model)
    n = int(keep.sum())
    kl = torch.nn.functional.kl_div(logp, target, reduction="sum", log_target=True)
    return kl / max(n, 1), n


def example_trees(examples: Sequence[Example], merge: bool = True) -> list[TokenTree]:
    """The examples as one token tree (`merge`: their shared prefixes computed once) or one tree each."""
    if merge:
        return [TokenTree([e.input_ids for e in examples], [e.answer_start for e in examples])]
    return [TokenTree([e.input_ids], [e.answer_start]) for e in examples]


@dataclass
class Schedule:
    """Which examples each optimizer step draws from: buckets in order, with replay of earlier ones."""

    buckets: list[list[Example]]
    steps_per_bucket: list[int]
    replay: float

    @property
    def total_steps(self) -> int:
        return sum(self.steps_per_bucket)

    def batches(self, batch_size: int, seed: int, length_group: int = 1) -> Iterator[tuple[int, list[Example]]]:
        """Yield (bucket index, examples) per step.

        `length_group` > 1 draws that many batches of one bucket at a time, sorts their examples by
        length and cuts them into batches again, in random order: the same examples, far less padding.
        """
        rng = random.Random(seed)
        regroup = random.Random(seed + 1)  # its own stream: grouping never changes which examples are drawn
        for k, (bucket, steps) in enumerate(zip(self.buckets, self.steps_per_bucket, strict=True)):
            earlier = [e for b in self.buckets[:k] for e in b]
            order: list[Example] = []
            drawn = []
            for step in range(steps):
                for _ in range(batch_size):
                    if earlier and rng.random() < self.replay:
                        drawn.append(rng.choice(earlier))
                        continue
                    if not order:
                        order = list(bucket)
                        rng.shuffle(order)
                    drawn.append(order.pop())
                if len(drawn) == batch_size * length_group or step == steps - 1:
                    if length_group > 1:
                        drawn.sort(key=lambda e: len(e.input_ids))
                    group = [drawn[i : i + batch_size] for i in range(0, len(drawn), batch_size)]
                    regroup.shuffle(group)
                    yield from ((k, batch) for batch in group)
                    drawn = []


def make_schedule(examples: Sequence[Example], difficulty: Sequence[float], cfg: WarmupConfig, seed: int) -> Schedule:
    """Easy-to-hard buckets of equal size (or one shuffled bucket), `cfg.epochs` passes in all."""
    if not examples:
        raise ValueError("make_schedule: no examples to train on")
    if len(difficulty) != len(examples):
        raise ValueError(f"make_schedule: {len(difficulty)} difficulties for {len(examples)} examples")
    if cfg.batch_size < 1 or not cfg.epochs > 0:
        raise ValueError(f"make_schedule: batch_size must be >= 1 and epochs > 0, got {cfg.batch_size}, {cfg.epochs}")
    total = max(1, round(cfg.epochs * len(examples) / cfg.batch_size))
    if cfg.order == "shuffled":
        return Schedule([list(examples)], [total], 0.0)
    rng = random.Random(seed)
    tiebreak = [rng.random() for _ in examples]  # equal difficulty: a seeded random order, not input order
    ranked = [e for _, _, e in sorted(zip(difficulty, tiebreak, examples, strict=True), key=lambda t: t[:2])]
    k = min(cfg.buckets, len(ranked))
    bounds = [round(i * len(ranked) / k) for i in range(k + 1)]
    buckets = [ranked[bounds[i] : bounds[i + 1]] for i in range(k)]
    steps = [max(1, round(total * len(b) / len(ranked))) for b in buckets]
    return Schedule(buckets, steps, cfg.replay)


def train_sft(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    schedule: Schedule,
    *,
    lr: float,
    batch_size: int,
    warmup_steps: int,
    length_group: int = 1,
    packing: bool = False,
    seed: int,
    device: str = "cpu",
    desc: str = "warm-up SFT",
    train: TrainConfig | None = None,
    log: StepLogger | None = None,
) -> list[float]:
    """Run the schedule (`batch_size` examples a step, grouped by length over `length_group` batches, each
    step's examples packed as one token tree with `packing`) with AdamW at peak rate `lr` and a cosine
    schedule after `warmup_steps`; returns every step's loss.

    `train` sets precision, gradient checkpointing, accumulation and LoRA; `log(step, metrics)` sees
    every step.
    """
    train = train or TrainConfig()
    torch.manual_seed(seed)
    # SFT can pack its examples apart (unbranched), so "auto" may pick flash-attn's varlen kernel; every
    # other attention takes them as one merged tree
    attention = resolve_attention(train.attention, torch.device(device), branched=False) if packing else "dense"

    def micro_loss(module, part, examples):
        # Every rank draws the same batch and takes its share; dividing by the whole batch's token
        # count makes each micro-batch's loss its share of the batch's mean NLL.
        tokens = sum(len(e.input_ids) - max(e.answer_start, 1) for e in examples)
        if packing:
            batch = pack_trees(example_trees(part, merge=attention != "flash"), device)
        else:
            batch = pad_batch(
                [e.input_ids for e in part], [e.answer_start for e in part], tokenizer.pad_token_id, device
            )
        with autocast(device, train.precision):
            loss, _ = answer_nll(module, batch, denominator=tokens, attention=attention)
        return loss, {"loss": loss.item()}

    batches = ((examples, {"bucket": bucket}) for bucket, examples in schedule.batches(batch_size, seed, length_group))
    with packed_attention(model, attention) if packing else contextlib.nullcontext():
        history = optimise(
            model,
            train,
            batches,
            micro_loss,
            lr=lr,
            total_steps=schedule.total_steps,
            warmup_steps=warmup_steps,
            per_item=False,
            desc=desc,
            log=log,
        )
    return [h["loss"] for h in history]
