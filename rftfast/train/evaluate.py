"""Held-out accuracy: greedy answers judged by the BFCL-rule checker, overall and by difficulty."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from rftfast.data.chat import Example
from rftfast.data.record import Record
from rftfast.eval.runner import generate_greedy, infer_category, judge


def difficulty_of(record: Record) -> str:
    """The tool world's level, else BFCL's category."""
    level = record.meta.get("level")
    return f"level {level}" if level is not None else infer_category(record)


def heldout_accuracy(model, tokenizer, records: Sequence[Record], examples: Sequence[Example],
                     max_new_tokens: int, batch_size: int) -> dict:
    """{"accuracy", "by_difficulty": {name: accuracy}, "failures": {category: n}, "n"}."""
    from tqdm.auto import tqdm

    model.eval()
    right, total, failures = Counter(), Counter(), Counter()
    for start in tqdm(range(0, len(records), batch_size), desc="held-out eval", unit="batch"):
        chunk = records[start: start + batch_size]
        outputs = generate_greedy(model, tokenizer, [e.prompt_ids for e in examples[start: start + batch_size]],
                                  max_new_tokens)
        for record, output in zip(chunk, outputs, strict=True):
            result = judge(record, output)
            name = difficulty_of(record)
            total[name] += 1
            right[name] += result.valid
            if not result.valid:
                failures[result.category] += 1
    by = defaultdict(float, {k: right[k] / total[k] for k in total})
    n = sum(total.values())
    return {"accuracy": sum(right.values()) / n if n else 0.0, "by_difficulty": dict(sorted(by.items())),
            "failures": dict(failures), "n": n}
