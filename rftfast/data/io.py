"""Reading raw and canonical record files, writing them atomically, and `datasets` integration.

Local JSON and JSONL are read with the json module, line by line, so an error names its line and
no value is reshaped (Arrow would unify differing argument dicts into one struct, adding nulls).
Parquet files and hub ids go through `datasets.load_dataset`. Canonical records go into a
`datasets.Dataset` with the nested fields as JSON strings for the same reason.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from rftfast.data.record import Record, RecordError


def read_raw(source: str | os.PathLike, split: str = "train") -> Iterator[tuple[str, Any]]:
    """Yield (location, raw record) from a .json/.jsonl/.parquet file or a hub dataset id."""
    path = Path(source)
    if path.suffix == ".jsonl" or (path.suffix == ".json" and _looks_like_jsonl(path)):
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{path}:{n}", json.loads(line)
                except json.JSONDecodeError as e:
                    raise RecordError(f"{path}:{n}: invalid JSON: {e}") from None
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise RecordError(f"{path}: invalid JSON: {e}") from None
        items = data if isinstance(data, list) else [data]
        for i, item in enumerate(items):
            yield f"{path}[{i}]", item
    else:
        import datasets

        if path.suffix == ".parquet":
            ds = datasets.load_dataset("parquet", data_files=str(path), split=split)
        elif path.exists():
            raise RecordError(f"{path}: unsupported file type (expected .json, .jsonl or .parquet)")
        else:  # a hub id, where a network exists
            ds = datasets.load_dataset(str(source), split=split)
        for i, item in enumerate(ds):
            yield f"{source}[{i}]", item


def _looks_like_jsonl(path: Path) -> bool:
    with path.open(encoding="utf-8") as f:
        first = next((line for line in f if line.strip()), "").strip()
        second = next((line for line in f if line.strip()), "")
    return first.startswith("{") and first.endswith("}") and bool(second.strip())


def read_records(path: str | os.PathLike) -> Iterator[Record]:
    """Canonical records from a JSON/JSONL/parquet file; a bad one raises RecordError with its location."""
    for where, raw in read_raw(path):
        if isinstance(raw, dict) and all(isinstance(raw.get(k), str) for k in ("messages", "tools")):
            raw = {k: json.loads(v) if k in _JSON_FIELDS and isinstance(v, str) else v for k, v in raw.items()}
        yield Record.from_json(raw, where)


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[TextIO]:
    """A text file that appears at `path` only once fully written: temp file beside it, fsync, rename.

    A run killed mid-write leaves the old file (or none), never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl_atomic(rows: Iterable[dict], path: str | os.PathLike) -> int:
    """One JSON object per line, written atomically; returns the count."""
    count = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    with atomic_open(path) as f:
        json.dump(value, f, indent=1)


def write_records(records: Iterable[Record], path: str | os.PathLike) -> int:
    """Canonical records as JSONL, written atomically. Returns the count."""
    return write_jsonl_atomic((r.to_json() for r in records), path)


_JSON_FIELDS = ("messages", "tools", "answer", "meta")


def to_dataset(records: Iterable[Record]):
    """A `datasets.Dataset` with one row per record; nested fields are JSON strings."""
    import datasets

    rows = [r.to_json() for r in records]
    return datasets.Dataset.from_list(
        [{k: (json.dumps(v, ensure_ascii=False) if k in _JSON_FIELDS else v) for k, v in row.items()} for row in rows])


def from_dataset(dataset) -> list[Record]:
    """Records back from `to_dataset`'s layout."""
    return [Record.from_json({k: (json.loads(v) if k in _JSON_FIELDS else v) for k, v in row.items()},
                             f"dataset[{i}]") for i, row in enumerate(dataset)]
