"""Supervised fine-tuning on answer tokens, with the easy-to-hard curriculum.

The loss is the mean negative log-likelihood of the answer tokens, computed from the model's last
hidden states with `linear_logprobs`, so the `tokens × vocab` logits are never materialised.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from rftfast import distributed
from rftfast.config import TrainConfig, WarmupConfig
from rftfast.data.chat import Example
from rftfast.logprob import linear_logprobs
from rftfast.train.batching import pad_batch
from rftfast.train.runtime import autocast, gradient_sync, parallel_wrapped, trainable, unwrap


def hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The last hidden states [B, T, H] (after the final norm); the LM head is applied by the fused kernels.

    A DDP- or FSDP2-wrapped model is called through its own forward, which the wrappers need to see
    (with `logits_to_keep=1`, so the head's matmul covers one position per row); a plain or peft model
    through its decoder, which keeps no other layer's activations.
    """
    if parallel_wrapped(model):
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                    logits_to_keep=1, use_cache=False)
        return out.hidden_states[-1]
    return model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state


def lm_head_weight(model, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The LM head's weight, cast (differentiably) to `dtype`: the hidden states' under bf16 autocast."""
    weight = unwrap(model).get_output_embeddings().weight
    if hasattr(weight, "full_tensor"):
        # FSDP2 leaves the root's weights gathered after its forward; a DTensor here means the head was
        # read outside that window, and gathering it ourselves would not reduce its gradient.
        raise RuntimeError("the LM head weight is still sharded: run the model's forward before reading it")
    return weight if dtype is None else weight.to(dtype)


def answer_nll(model, batch: dict[str, torch.Tensor], denominator: int | None = None) -> tuple[torch.Tensor, int]:
    """(NLL of the answer tokens divided by `denominator`, default their count; their count).

    A micro-batch passes the whole batch's token count as `denominator`, so the micro-batches'
    gradients add up to the full batch's.
    """
    hidden = hidden_states(model, batch["input_ids"], batch["attention_mask"])
    labels = batch["labels"].reshape(-1)
    logp = linear_logprobs(hidden.reshape(-1, hidden.shape[-1]), lm_head_weight(model, hidden.dtype), labels)
    n = int((labels != -100).sum())
    return -logp.float().sum() / max(denominator or n, 1), n


def micro_batches(items: Sequence, parts: int) -> list[Sequence]:
    """`items` cut into `parts` contiguous, non-empty, near-equal slices (fewer if there are fewer items)."""
    parts = max(1, min(parts, len(items)))
    bounds = [round(i * len(items) / parts) for i in range(parts + 1)]
    return [items[bounds[i]: bounds[i + 1]] for i in range(parts)]


def rank_micro_batches(batch: Sequence, accumulation: int) -> list[Sequence]:
    """This rank's share of `batch`, cut into micro-batches. Every rank gets the same number of them
    (DDP and FSDP2 need the same forwards on every rank), decided from the batch alone so all agree."""
    world = distributed.world_size()
    if len(batch) < world:
        raise ValueError(f"a batch of {len(batch)} cannot be split across {world} processes")
    return micro_batches(distributed.shard(batch), min(accumulation, len(batch) // world))


def cosine_lr(step: int, total: int, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Schedule:
    """Which examples each optimizer step draws from: buckets in order, with replay of earlier ones."""

    buckets: list[list[Example]]
    steps_per_bucket: list[int]
    replay: float

    @property
    def total_steps(self) -> int:
        return sum(self.steps_per_bucket)

    def batches(self, batch_size: int, seed: int, length_group: int = 1):
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
                    group = [drawn[i: i + batch_size] for i in range(0, len(drawn), batch_size)]
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
    buckets = [ranked[bounds[i]: bounds[i + 1]] for i in range(k)]
    steps = [max(1, round(total * len(b) / len(ranked))) for b in buckets]
    return Schedule(buckets, steps, cfg.replay)


def train_sft(model, tokenizer, schedule: Schedule, cfg: WarmupConfig, seed: int, device: str = "cpu",
              desc: str = "warm-up SFT", train: TrainConfig | None = None,
              log: Callable[[int, dict], None] | None = None) -> list[float]:
    """Run the schedule with AdamW and a cosine learning rate; returns the loss of every step.

    `train` sets precision, gradient checkpointing, accumulation and LoRA; `log(step, metrics)` sees
    every step.
    """
    from tqdm.auto import tqdm

    train = train or TrainConfig()
    torch.manual_seed(seed)
    losses = []
    with trainable(model, train) as module:
        module.train()
        params = [p for p in module.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: cosine_lr(s, schedule.total_steps, cfg.warmup_steps))
        bar = tqdm(schedule.batches(cfg.batch_size, seed, cfg.length_group), total=schedule.total_steps, desc=desc,
                   unit="step", disable=not distributed.is_main())
        for step, (bucket, examples) in enumerate(bar):
            # Every rank draws the same batch and takes its share; dividing by the whole batch's token
            # count and multiplying by the world size (DDP and FSDP2 average gradients) makes the
            # update equal one process's on the whole batch.
            tokens = sum(len(e.input_ids) - max(e.answer_start, 1) for e in examples)
            parts = rank_micro_batches(examples, train.gradient_accumulation)
            loss = 0.0
            for i, part in enumerate(parts):
                batch = pad_batch([e.input_ids for e in part], [e.answer_start for e in part],
                                  tokenizer.pad_token_id, device)
                with gradient_sync(module, i == len(parts) - 1):
                    with autocast(device, train.precision):
                        part_loss, _ = answer_nll(module, batch, denominator=tokens)
                    (part_loss * distributed.world_size()).backward()
                loss += part_loss.item()
            (loss,) = distributed.all_sum([loss])
            lr = scheduler.get_last_lr()[0]  # the rate this step uses
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss)
            bar.set_postfix(bucket=bucket, loss=f"{loss:.3f}")
            if log is not None:
                log(step, {"loss": loss, "lr": lr, "bucket": bucket})
    return losses
