"""`rftfast data convert`: raw files in a public format to canonical JSONL, every record accounted for."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rftfast.data.importers import IMPORTERS, import_bfcl
from rftfast.data.io import iter_raw, read_raw, write_records
from rftfast.data.record import Record, RecordError, UnsupportedRecord

FORMATS = (*IMPORTERS, "bfcl")


@dataclass
class ConvertReport:
    """What a conversion read, wrote and skipped (with the reasons, grouped)."""

    read: int = 0
    written: int = 0
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"read {self.read} raw records, wrote {self.written} canonical records, skipped {self.skipped}"]
        for reason, n in self.reasons.most_common():
            lines.append(f"  skipped {n}: {reason}")
        lines += [f"  e.g. {e}" for e in self.examples]
        return "\n".join(lines)


def bfcl_possible_answer_path(test_file: Path) -> Path:
    """BFCL keeps `possible_answer/<same name>` beside its test files."""
    return test_file.parent / "possible_answer" / test_file.name


def bfcl_test_files(path: str | os.PathLike) -> list[Path]:
    """A BFCL directory's test files (`BFCL_*.json`, sorted; their possible answers lie in `possible_answer/`),
    or `[path]` for anything else. A directory without test files raises RecordError."""
    path = Path(path)
    if not path.is_dir():
        return [path]
    files = sorted(path.glob("BFCL_*.json"))
    if not files:
        raise RecordError(f"{path}: no BFCL_*.json test files in this directory")
    return files


def _reason(error: RecordError) -> str:
    # Group by the message past the location ("path:3.tools[0]: expected ..." -> "expected ...").
    return str(error).split(": ", 1)[-1][:100]


def import_file(
    fmt: str, src: str | os.PathLike, on_error: str = "stop", report: ConvertReport | None = None
) -> list[Record]:
    """Canonical records of a raw file (format "bfcl": also of a BFCL directory, every test file in it, as
    `rftfast eval` reads one). `on_error="stop"` raises RecordError on the first bad record (its message
    starts with the file and line, or index); `"skip"` skips it and counts it in `report`.

    A bad record is one that does not read (not UTF-8, not strict JSON), does not fit its format, or
    would not read back from the output. Records of a kind rftfast does not import (BFCL's multi-turn
    entries) are skipped and counted in both modes. Problems of the file itself (missing, empty, a
    directory) raise RecordError in both modes. Ids are unique in the result: a repeated one gets `~<n>`.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format: unknown format {fmt!r}; expected one of {FORMATS}")
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error: expected 'stop' or 'skip', got {on_error!r}")
    report = report if report is not None else ConvertReport()
    out = []
    for file in bfcl_test_files(src) if fmt == "bfcl" else [src]:
        out.extend(_import_one_file(fmt, file, on_error, report))
    _make_ids_unique(out)
    return out


def _import_one_file(fmt: str, src: str | os.PathLike, on_error: str, report: ConvertReport) -> list[Record]:
    answers = _bfcl_answers(Path(src)) if fmt == "bfcl" else {}
    out, read = [], 0
    for where, raw in iter_raw(src):
        read += 1
        report.read += 1
        try:
            out.extend(_import_record(fmt, raw, answers, where))
        except RecordError as error:
            if on_error == "stop" and not isinstance(error, UnsupportedRecord):
                raise
            report.skipped += 1
            report.reasons[_reason(error)] += 1
            if len(report.examples) < 3:
                report.examples.append(str(error))
    if not read:
        raise RecordError(f"{src}: no records in the file")
    return out


def _make_ids_unique(records: list[Record]) -> None:
    """A repeated id (a source that repeats its own, an exact duplicate record) becomes `<id>~<n>`, in order:
    stages key records by id (the judge's cache, the search's pairs)."""
    taken, suffix = set(), Counter()
    for record in records:
        base = record.id
        while record.id in taken:
            suffix[base] += 1
            record.id = f"{base}~{suffix[base]}"
        taken.add(record.id)


def _import_record(fmt: str, raw: Any, answers: dict[str, dict], where: str) -> list[Record]:
    """All canonical records of one raw record, each as it will be written, or RecordError."""
    if isinstance(raw, RecordError):  # the line did not read
        raise raw
    try:
        if fmt == "bfcl":
            entry_id = raw.get("id") if isinstance(raw, dict) else None
            records = import_bfcl(raw, answers.get(entry_id) if isinstance(entry_id, str) else None, where)
        else:
            records = IMPORTERS[fmt](raw, where)
        return [_as_written(r, where) for r in records]
    except RecursionError:  # nesting json read, but too deep for the importers' own recursion
        raise RecordError(f"{where}: nested too deeply") from None


def _bfcl_answers(test_file: Path) -> dict[str, dict]:
    """The possible-answer entries beside a BFCL test file, by id; none when it has no such file."""
    answer_file = bfcl_possible_answer_path(test_file)
    if not answer_file.exists():
        return {}
    answers = {}
    for where, raw in read_raw(answer_file):
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise RecordError(
                f"{where}: expected a possible answer {{'id': str, 'ground_truth': list}}, got {type(raw).__name__}"
            )
        answers[raw["id"]] = raw
    return answers


def _as_written(record: Record, where: str) -> Record:
    """`record` as it will read back from the output: strict JSON in the canonical shape, or RecordError.

    Importers build records field by field; this is the one place that checks the result whole.
    """
    try:
        text = json.dumps(record.to_json(), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:  # NaN or Infinity, or a value JSON has no form for (parquet bytes)
        raise RecordError(f"{where}: cannot be written as JSON: {e}") from None
    return Record.from_json(json.loads(text), where)


def convert_file(fmt: str, src: str | os.PathLike, dst: str | os.PathLike, on_error: str = "stop") -> ConvertReport:
    """Convert `src` (format `fmt`) to canonical JSONL at `dst`, written atomically.

    Bad input raises RecordError (see `import_file`), as does a conversion with no record to write.
    """
    report = ConvertReport()
    records = import_file(fmt, src, on_error, report)
    if not records:  # every record was skipped: an empty output helps no one
        raise RecordError(
            f"{src}: no record converted, all {report.skipped} skipped as bad ({'; '.join(report.examples)})"
        )
    report.written = write_records(records, dst)
    return report
