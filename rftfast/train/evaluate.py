"""Held-out accuracy: greedy answers judged by the BFCL-rule checker, overall and by difficulty."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from rftfast import distributed
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
    local = distributed.shard(range(len(records)))  # split across ranks when several processes run
    verdicts = []
    for start in tqdm(range(0, len(local), batch_size), desc="held-out eval", unit="batch",
                      disable=not distributed.is_main()):
        chunk = local[start: start + batch_size]
        outputs = generate_greedy(model, tokenizer, [examples[i].prompt_ids for i in chunk], max_new_tokens)
        for i, output in zip(chunk, outputs, strict=True):
            result = judge(records[i], output)
            verdicts.append((difficulty_of(records[i]), result.valid, result.category))
    right, total, failures = Counter(), Counter(), Counter()
    for name, valid, category in distributed.gather(verdicts):
        total[name] += 1
        right[name] += valid
        if not valid:
            failures[category] += 1
    by = defaultdict(float, {k: right[k] / total[k] for k in total})
    n = sum(total.values())
    return {"accuracy": sum(right.values()) / n if n else 0.0, "by_difficulty": dict(sorted(by.items())),
            "failures": dict(failures), "n": n}
