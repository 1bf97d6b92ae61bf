"""Held-out accuracy: greedy answers judged by the BFCL-rule checker, overall and by difficulty."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from rftfast import distributed
from rftfast.data.chat import Example
from rftfast.data.record import Record
from rftfast.eval.checker import CheckResult
from rftfast.eval.runner import generate_greedy, infer_category, judge


def difficulty_of(record: Record) -> str:
    """The tool world's level, else BFCL's category."""
    level = record.meta.get("level")
    return f"level {level}" if level is not None else infer_category(record)


def judge_greedy(model, tokenizer, records: Sequence[Record], examples: Sequence[Example], max_new_tokens: int,
                 batch_size: int, desc: str) -> list[CheckResult]:
    """Greedy answers to `examples` judged against `records`, in record order (split across ranks when
    several processes run, and gathered)."""
    from tqdm.auto import tqdm

    model.eval()
    local = distributed.shard(range(len(records)))
    results = []
    for start in tqdm(range(0, len(local), batch_size), desc=desc, unit="batch", disable=not distributed.is_main()):
        chunk = local[start: start + batch_size]
        outputs = generate_greedy(model, tokenizer, [examples[i].prompt_ids for i in chunk], max_new_tokens)
        results.extend(judge(records[i], output) for i, output in zip(chunk, outputs, strict=True))
    return distributed.gather(results)


def heldout_accuracy(model, tokenizer, records: Sequence[Record], examples: Sequence[Example],
                     max_new_tokens: int, batch_size: int) -> dict:
    """{"accuracy", "by_difficulty": {name: accuracy}, "failures": {category: n}, "n"}."""
    results = judge_greedy(model, tokenizer, records, examples, max_new_tokens, batch_size, "held-out eval")
    right, total, failures = Counter(), Counter(), Counter()
    for record, result in zip(records, results, strict=True):
        name = difficulty_of(record)
        total[name] += 1
        right[name] += result.valid
        if not result.valid:
            failures[result.category] += 1
    by = defaultdict(float, {k: right[k] / total[k] for k in total})
    n = sum(total.values())
    return {"accuracy": sum(right.values()) / n if n else 0.0, "by_difficulty": dict(sorted(by.items())),
            "failures": dict(failures), "n": n}
