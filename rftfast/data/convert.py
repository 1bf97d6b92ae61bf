"""`rftfast data convert`: raw files in a public format to canonical JSONL, every record accounted for."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rftfast.data.importers import IMPORTERS, import_bfcl
from rftfast.data.io import read_raw, write_records
from rftfast.data.record import Record, RecordError

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


def _reason(error: RecordError) -> str:
    # Group by the message past the location ("path:3.tools[0]: expected ..." -> "expected ...").
    return str(error).split(": ", 1)[-1][:100]


def import_file(fmt: str, src: str | os.PathLike, on_error: str = "stop",
                report: ConvertReport | None = None) -> list[Record]:
    """Canonical records of a raw file. `on_error="stop"` raises on the first bad record (with its
    index and location); `"skip"` skips it and counts it in `report`."""
    if fmt not in FORMATS:
        raise ValueError(f"format: unknown format {fmt!r}; expected one of {FORMATS}")
    if on_error not in ("stop", "skip"):
        raise ValueError(f"on_error: expected 'stop' or 'skip', got {on_error!r}")
    report = report if report is not None else ConvertReport()
    answers = {}
    if fmt == "bfcl":
        answer_file = bfcl_possible_answer_path(Path(src))
        if answer_file.exists():
            answers = {raw["id"]: raw for _, raw in read_raw(answer_file)}
    out = []
    for index, (where, raw) in enumerate(read_raw(src)):
        report.read += 1
        try:
            if fmt == "bfcl":
                records = import_bfcl(raw, answers.get(raw.get("id")) if isinstance(raw, dict) else None, where)
            else:
                records = IMPORTERS[fmt](raw, where)
        except RecordError as e:
            if on_error == "stop":
                raise RecordError(f"record {index} ({e})") from None
            report.skipped += 1
            report.reasons[_reason(e)] += 1
            if len(report.examples) < 3:
                report.examples.append(f"record {index}: {e}")
            continue
        out.extend(records)
    return out


def convert_file(fmt: str, src: str | os.PathLike, dst: str | os.PathLike, on_error: str = "stop") -> ConvertReport:
    """Convert `src` (format `fmt`) to canonical JSONL at `dst`, written atomically."""
    report = ConvertReport()
    records = import_file(fmt, src, on_error, report)
    report.written = write_records(records, dst)
    return report
