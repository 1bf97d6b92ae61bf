"""The judge: a model's answer text parsed and checked by BFCL's rules against a record's possible answer.

A BFCL record carries its category, possible answer and function docs in `meta`; a canonical record's own
answer becomes its possible answer (each value the only one accepted) and its category is inferred from its
shape. The answer is read in the model's call format (`rftfast.answer.ANSWER_FORMATS`; "auto" takes the one its
text shows); an answer that is no call in that format is a parse failure, except where no call is the right
answer (irrelevance), as in BFCL.
"""

from __future__ import annotations

from rftfast.answer import parse_answer
from rftfast.data.record import ParseError, Record
from rftfast.eval.checker import CheckResult, check


def infer_category(record: Record) -> str:
    """BFCL's category of a record: its meta's, else from the answer's shape."""
    if record.meta.get("category"):
        return record.meta["category"]
    if not record.is_call:
        return "irrelevance"
    names = {c.name for c in record.answer}
    if len(record.answer) == 1:
        return "simple" if len(record.tools) == 1 else "multiple"
    return "parallel" if len(names) == 1 and len(record.tools) == 1 else "parallel_multiple"


def possible_answer(record: Record) -> list[dict]:
    """BFCL's possible-answer shape: from meta, else each ground-truth value as the only one accepted."""
    if "possible_answer" in record.meta:
        return record.meta["possible_answer"]
    if not record.is_call:
        return []
    return [{c.name: {k: [v] for k, v in c.arguments.items()}} for c in record.answer]


def judge(record: Record, output: str, *, call_format: str = "pythonic") -> CheckResult:
    """Parse the model's text in `call_format` and check it against the record's possible answer.

    `call_format`: "pythonic", "json" (Llama-3.1), "hermes" (Qwen2.5's ``<tool_call>`` blocks) or "auto"
    (`rftfast.answer.detect_format`). Raises ValueError for another.
    """
    category = infer_category(record)
    functions = _functions(record)
    try:
        calls = parse_answer(output.strip(), call_format)
    except ParseError as e:
        if "irrelevance" in category:
            return CheckResult(True, "ok", "answered in text, no call")
        return CheckResult(False, "parse_failure", str(e))
    return check(functions, calls, possible_answer(record), category)


def _functions(record: Record) -> list[dict]:
    return record.meta.get("functions") or [t["function"] for t in record.tools]


def check_judgeable(record: Record) -> None:
    """Raise ValueError unless `judge` can judge `record`: its category, possible answer and function docs
    have the shapes the checker needs. Found before generating, not halfway through an evaluation."""
    check(_functions(record), [], possible_answer(record), infer_category(record))  # no calls: a dry run
