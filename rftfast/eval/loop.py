"""One greedy decode-and-judge loop, for `rftfast eval`, deficiency scoring and held-out evaluation.

Records are split across ranks when several processes run (`rftfast.distributed`: every world_size-th record
from this rank's), decoded greedily in batches, judged by BFCL's rules, and gathered back into record order on
every rank. With one process the split and the gather are no-ops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from rftfast import distributed
from rftfast.answer import ANSWER_FORMATS
from rftfast.data.chat import END
from rftfast.data.record import Record
from rftfast.eval.checker import CheckResult
from rftfast.eval.judge import judge

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class Judged(NamedTuple):
    """A model's greedy answer to one record (cut at the end of its turn) and the judge's verdict on it.

    `output_ids` are the generated token ids, up to and including the end-of-turn token when one was generated:
    what the policy itself wrote, for pairs built against it (`rftfast.mcts.divergence_pair`)."""

    output: str
    result: CheckResult
    output_ids: tuple[int, ...] = ()


def end_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The token ids that end a turn: the tokenizer's eos and rftfast's end-of-turn token, where they exist."""
    return [
        t
        for t in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END))
        if isinstance(t, int) and t >= 0 and t != tokenizer.unk_token_id
    ]


def greedy_token_ids(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Sequence[int]], max_new_tokens: int
) -> list[list[int]]:
    """Greedy continuations of token-id prompts, batched with left padding; each cut after its first end token."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    eos = end_token_ids(tokenizer)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=eos or None,
        )
    continuations = []
    for row in out[:, width:].tolist():
        end = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        continuations.append(row[:end])
    return continuations


def generate_greedy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: Sequence[Sequence[int]], max_new_tokens: int
) -> list[str]:
    """Greedy continuations of token-id prompts, batched with left padding; decoded text."""
    return [_text(tokenizer, ids) for ids in greedy_token_ids(model, tokenizer, prompts, max_new_tokens)]


def _text(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True).split(END)[0]


def judge_greedy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    prompts: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    batch_size: int,
    desc: str = "eval",
    progress: bool = True,
    call_format: str = "pythonic",
) -> list[Judged]:
    """Greedy answers to `prompts` (one per record, token ids) judged against `records`, in record order.

    `call_format`: how the answers write their calls (`judge`'s argument).
    """
    from tqdm.auto import tqdm

    if len(prompts) != len(records):
        raise ValueError(f"prompts: expected one per record ({len(records)}), got {len(prompts)}")
    if call_format not in ANSWER_FORMATS:  # found before decoding, not at the first judged answer
        raise ValueError(f"call_format: expected one of {ANSWER_FORMATS}, got {call_format!r}")
    model.eval()
    local = distributed.shard(range(len(records)))
    judged: list[Judged] = []
    bar = tqdm(total=len(local), desc=desc, unit="rec", disable=not (progress and distributed.is_main()))
    for start in range(0, len(local), batch_size):
        chunk = local[start : start + batch_size]
        for i, ids in zip(chunk, greedy_token_ids(model, tokenizer, [prompts[i] for i in chunk], max_new_tokens)):
            output = _text(tokenizer, ids)
            judged.append(Judged(output, judge(records[i], output, call_format=call_format), tuple(ids)))
        bar.update(len(chunk))
    bar.close()
    return distributed.gather(judged)
