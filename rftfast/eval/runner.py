"""`rftfast eval`: greedy-decode a model on evaluation records and judge each answer by BFCL's rules.

Records come from BFCL directories (test files with `possible_answer/` beside them) or canonical
files. A canonical record's own answer becomes its possible answer (each value the only one
accepted) and its category is inferred from its shape.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rftfast.answer import parse_calls
from rftfast.data.chat import END, render_example
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


def judge(record: Record, output: str) -> CheckResult:
    """Parse the model's text and check it against the record's possible answer."""
    category = infer_category(record)
    functions = _functions(record)
    try:
        calls = parse_calls(output.strip(), "pythonic")
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


@dataclass
class EvalReport:
    """Per category: how many, how many right, and the failure categories of the rest."""

    total: Counter = field(default_factory=Counter)
    correct: Counter = field(default_factory=Counter)
    failures: dict = field(default_factory=lambda: defaultdict(Counter))

    def add(self, category: str, result: CheckResult) -> None:
        self.total[category] += 1
        if result.valid:
            self.correct[category] += 1
        else:
            self.failures[category][result.category] += 1

    @property
    def accuracy(self) -> float:
        n = sum(self.total.values())
        return sum(self.correct.values()) / n if n else 0.0

    def table(self) -> str:
        kinds = sorted({k for c in self.failures.values() for k in c})
        head = "| category | n | accuracy | " + " | ".join(kinds) + (" |" if kinds else "")
        lines = [head, "|---|---:|---:|" + "---:|" * len(kinds)]
        for cat in sorted(self.total):
            cells = " | ".join(str(self.failures[cat].get(k, 0)) for k in kinds)
            acc = self.correct[cat] / self.total[cat]
            lines.append(f"| {cat} | {self.total[cat]} | {acc:.1%} | {cells}" + (" |" if kinds else ""))
        lines.append(f"| **all** | {sum(self.total.values())} | {self.accuracy:.1%} |" + " |" * len(kinds))
        return "\n".join(lines)


def generate_greedy(model, tokenizer, prompts: Sequence[list[int]], max_new_tokens: int) -> list[str]:
    """Greedy continuations of token-id prompts, batched with left padding; decoded text."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    eos = [t for t in (tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END)) if isinstance(t, int) and t >= 0
           and t != tokenizer.unk_token_id]
    with torch.no_grad():
        out = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                             max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                             eos_token_id=eos or None)
    texts = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
    return [t.split(END)[0] for t in texts]


def evaluate(model, tokenizer, records: Sequence[Record], *, max_new_tokens: int = 128, batch_size: int = 8,
             progress: bool = True) -> tuple[EvalReport, list[dict]]:
    """Score `model` on `records`; returns the report and one row per record (output and verdict)."""
    from tqdm.auto import tqdm

    report, rows = EvalReport(), []
    bar = tqdm(total=len(records), desc="eval", unit="rec", disable=not progress)
    for start in range(0, len(records), batch_size):
        batch = records[start: start + batch_size]
        prompts = [render_example(r, tokenizer).prompt_ids for r in batch]
        for record, output in zip(batch, generate_greedy(model, tokenizer, prompts, max_new_tokens), strict=True):
            result = judge(record, output)
            report.add(infer_category(record), result)
            rows.append({"id": record.id, "category": infer_category(record), "output": output,
                         "valid": result.valid, "failure": result.category, "message": result.message})
        bar.update(len(batch))
    bar.close()
    return report, rows


def load_eval_records(paths: Sequence[str | Path], limit: int | None = None):
    """Records from BFCL directories/files (`BFCL_*.json`) and canonical files, at most `limit` per file.

    Returns (records, report): entries BFCL's AST categories cannot judge (multi-turn) are skipped
    and counted in the report, never dropped silently.
    """
    from rftfast.data.convert import ConvertReport, import_file
    from rftfast.data.io import read_records

    if limit is not None and limit < 1:  # a slice would read -1 as "all but the last"
        raise ValueError(f"limit: expected at least 1 record per file, got {limit}")
    records, report = [], ConvertReport()
    for path in map(Path, paths):
        files = sorted(path.glob("BFCL_*.json")) if path.is_dir() else [path]
        if path.is_dir() and not files:
            raise FileNotFoundError(f"{path}: no BFCL_*.json test files in this directory")
        for f in files:
            rs = import_file("bfcl", f, "skip", report) if f.name.startswith("BFCL_") else list(read_records(f))
            rs = rs[:limit] if limit is not None else rs
            for r in rs:
                try:
                    check_judgeable(r)
                except ValueError as e:
                    raise ValueError(f"{f}: record {r.id!r} cannot be judged: {e}") from None
            records.extend(rs)
    return records, report


# Any of these beside a model's weights lets AutoTokenizer load it.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model", "tekken.json")


def load_model(path: str, device: str = "cpu"):
    """(model, tokenizer) of a causal LM to evaluate, from a folder or a hub id.

    Raises ValueError saying what is wrong: no such folder, no tokenizer beside the weights (transformers
    would blame a missing sentencepiece), or a checkpoint without tensors the model needs (transformers
    would initialise them at random and evaluate that).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rftfast.data.io import looks_like_hub_id

    folder = Path(path)
    if folder.is_dir():
        if not any((folder / name).exists() for name in TOKENIZER_FILES):
            raise ValueError(f"{folder}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILES)}); save "
                             "the tokenizer beside the model with tokenizer.save_pretrained(folder)")
    elif folder.exists():
        raise ValueError(f"{path}: not a folder; expected a model folder (config.json, weights, tokenizer)")
    elif not looks_like_hub_id(str(path)):
        raise ValueError(f"{path}: no such model folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    except Exception as e:  # noqa: BLE001 - whatever transformers raises, name the model and the cause
        raise ValueError(f"{path}: cannot load the model: {type(e).__name__}: {e}") from None
    missing = sorted(map(str, info.get("missing_keys") or ())) + sorted(map(str, info.get("mismatched_keys") or ()))
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise ValueError(f"{path}: the checkpoint lacks {len(missing)} tensor(s) the model needs, or has them in "
                         f"another shape (they would be random): {shown}")
    return model.to(device).eval(), tokenizer
