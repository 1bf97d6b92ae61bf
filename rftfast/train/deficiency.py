"""Deficiency identification: which training records the current policy handles worst.

Two signals, as in iTool: the perplexity of the ground-truth answer under the policy, and greedy
decoding judged by the BFCL-rule checker. The worst `ratio` by perplexity and every greedy
failure are selected. Each greedy failure also yields a pair on the spot (`divergence_pairs`): the truth's
step against the step where greedy decoding first leaves it.

Greedy answers are read, and steps cut, in the policy's call format (`call_format`; default: its chat
template's, `rftfast.mcts.answer_format`): a Qwen2.5 policy's Hermes blocks are judged as Hermes blocks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from rftfast import distributed
from rftfast.data.chat import Example
from rftfast.data.record import Record
from rftfast.eval import judge_greedy
from rftfast.mcts import Pair, answer_format, divergence_pair, ground_truth
from rftfast.ops.logprob import sequence_logprobs
from rftfast.train.batching import pad_batch
from rftfast.train.model_io import hidden_states, lm_head_weight
from rftfast.train.packing import pack_trees, packed_attention, packed_hidden_states, resolve_attention
from rftfast.train.sft import example_trees

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class DeficiencyConfig:
    """How many training records are scored per iteration, and which of them count as deficient."""

    ratio: float = 0.3  # the worst fraction by answer perplexity, plus every greedy failure
    max_new_tokens: int = 64
    max_records: int = 400  # score at most this many training records per iteration (a seeded sample)
    # Pair the truth's step against greedy decoding's first wrong step for every greedy failure, beside the
    # search's pairs: the mistake the policy actually makes, at the prefix it actually reaches.
    divergence_pairs: bool = True


@torch.no_grad()
def answer_perplexities(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    batch_size: int = 16,
    device: str = "cpu",
    packing: bool = False,  # off, as for the warm-up's SFT: its examples share little (see WarmupConfig.packing)
) -> list[float]:
    """exp(mean NLL of the answer tokens) of each example under `model` (each batch one token tree with
    `packing`, padded rows without)."""
    attention = resolve_attention("auto", torch.device(device), branched=True)
    out = []
    with packed_attention(model, attention) if packing else contextlib.nullcontext():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            if packing:
                batch = pack_trees(example_trees(chunk), device)
                hidden, layout = packed_hidden_states(model, batch, attention), {"cu_seqlens": batch.cu_seqlens}
                labels = batch.labels
            else:
                batch = pad_batch(
                    [e.input_ids for e in chunk], [e.answer_start for e in chunk], tokenizer.pad_token_id, device
                )
                hidden, labels, layout = (
                    hidden_states(model, batch["input_ids"], batch["attention_mask"]),
                    batch["labels"],
                    {},
                )
            mean_logp = sequence_logprobs(hidden, lm_head_weight(model), labels, average=True, **layout)
            out.extend(math.exp(min(50.0, -float(v))) for v in mean_logp)
    return out


@dataclass
class Deficiencies:
    """Per scored record: perplexity, greedy verdict and greedy tokens; `selected` indexes the deficient ones."""

    perplexity: list[float]
    greedy_valid: list[bool]
    selected: list[int]
    greedy_ids: list[tuple[int, ...]] = dataclasses.field(default_factory=list)

    @property
    def greedy_accuracy(self) -> float:
        return sum(self.greedy_valid) / len(self.greedy_valid) if self.greedy_valid else 0.0


def find_deficiencies(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    examples: Sequence[Example],
    cfg: DeficiencyConfig,
    batch_size: int = 16,
    device: str = "cpu",
    call_format: str | None = None,
) -> Deficiencies:
    """Score `records` (rendered as `examples`); `call_format` is the policy's (module docstring)."""
    call_format = answer_format(tokenizer, call_format=call_format)
    model.eval()
    local = distributed.shard(range(len(records)))  # split across ranks when several processes run
    ppl = distributed.gather(answer_perplexities(model, tokenizer, [examples[i] for i in local], batch_size, device))
    judged = judge_greedy(
        model,
        tokenizer,
        records,
        [e.prompt_ids for e in examples],
        max_new_tokens=cfg.max_new_tokens,
        batch_size=batch_size,
        desc="deficiency: greedy decoding",
        call_format=call_format,
    )
    valid = [j.result.valid for j in judged]
    worst = sorted(range(len(records)), key=lambda i: -ppl[i])[: max(1, round(cfg.ratio * len(records)))]
    selected = sorted(set(worst) | {i for i, ok in enumerate(valid) if not ok})
    return Deficiencies(ppl, valid, selected, [j.output_ids for j in judged])


def divergence_pairs(
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    examples: Sequence[Example],
    greedy_ids: Sequence[Sequence[int]],
    valid: Sequence[bool],
    call_format: str | None = None,
) -> list[Pair]:
    """One pair per greedy failure (`rftfast.mcts.divergence_pair`); `tree` is the record's index in `records`.
    A failure whose truth cannot be cut into steps, or whose greedy answer equals the truth token for token
    (judged wrong all the same), yields none. Steps are cut in `call_format` (module docstring)."""
    call_format = answer_format(tokenizer, call_format=call_format)
    pairs = []
    for i, (record, example, ids, ok) in enumerate(zip(records, examples, greedy_ids, valid, strict=True)):
        truth = None if ok else ground_truth(record, tokenizer, call_format=call_format)
        if truth is None:
            continue
        pair = divergence_pair(truth, example.prompt_ids, ids, tokenizer, record_id=record.id or str(i), tree=i)
        if pair is not None:
            pairs.append(pair)
    return pairs
