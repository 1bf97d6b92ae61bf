"""Held-out accuracy: greedy answers judged by the BFCL-rule checker, overall and by difficulty."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rftfast.data.chat import Example
from rftfast.data.record import Record
from rftfast.eval import EvalReport, Judged, difficulty_of, judge_greedy
from rftfast.mcts.pairs import answer_format

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def heldout_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: Sequence[Record],
    examples: Sequence[Example],
    max_new_tokens: int,
    batch_size: int,
    call_format: str | None = None,
) -> tuple[dict, list[Judged]]:
    """({"accuracy", "by_difficulty": {name: accuracy}, "failures": {category: n}, "n"}, each record's answer),
    the answers judged in `call_format` (default: the chat template's)."""
    judged = judge_greedy(
        model,
        tokenizer,
        records,
        [e.prompt_ids for e in examples],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        desc="held-out eval",
        call_format=answer_format(tokenizer, call_format=call_format),  # the format the model was trained in
    )
    report = EvalReport()
    for record, (_, result, _) in zip(records, judged, strict=True):
        report.add(difficulty_of(record), result)
    return report.metrics(by="by_difficulty"), judged
