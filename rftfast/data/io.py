"""Reading raw and canonical record files, writing them atomically, and `datasets` integration.

Local JSON and JSONL are read with the json module, line by line, so an error names its line and
no value is reshaped (Arrow would unify differing argument dicts into one struct, adding nulls).
Parquet files and hub ids go through `datasets.load_dataset`. Canonical records go into a
`datasets.Dataset` with the nested fields as JSON strings for the same reason.
"""

from __future__ import annotations

import codecs
import errno
import json
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from rftfast.data.record import Record, RecordError

if TYPE_CHECKING:
    import datasets


def read_raw(source: str | os.PathLike, split: str = "train") -> Iterator[tuple[str, Any]]:
    """Yield (location, raw record) from a .json/.jsonl/.parquet file or a hub dataset id.

    Anything that cannot be read raises RecordError naming the file and line (or index).
    """
    for where, raw in iter_raw(source, split):
        if isinstance(raw, RecordError):
            raise raw
        yield where, raw


def iter_raw(source: str | os.PathLike, split: str = "train") -> Iterator[tuple[str, Any]]:
    """`read_raw`, except that a line that does not read (not UTF-8, not strict JSON, nested too deeply)
    comes as its RecordError in place of the value, so a caller may skip it and read on. Problems of
    the source as a whole (missing, a directory, unreadable, one broken JSON document) still raise.
    """
    path = Path(source)
    if path.is_dir():
        raise RecordError(f"{path}: is a directory, expected a .json, .jsonl or .parquet file")
    if path.suffix in (".json", ".jsonl"):
        with _open(path) as f:
            jsonl = path.suffix == ".jsonl" or _looks_like_jsonl(f)
            if jsonl:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        yield f"{path}:{n}", _loads(line, path, n)
                return
            value = _loads(f.read(), path)
        if isinstance(value, RecordError):
            raise value
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            yield f"{path}[{i}]", item
        return
    if path.suffix == ".parquet":
        _open(path).close()  # the same errors as JSON files for a missing or unreadable file
        ds = _load_dataset(str(path), "parquet", data_files=str(path), split=split)
    elif path.exists():
        raise RecordError(f"{path}: unsupported file type (expected .json, .jsonl or .parquet)")
    elif looks_like_hub_id(str(source)):
        ds = _load_hub_dataset(str(source), split)
    else:
        raise RecordError(f"{path}: no such file")
    for i, item in enumerate(ds):
        yield f"{source}[{i}]", item


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise RecordError(f"{path}: no such file") from None
    except OSError as e:
        raise RecordError(f"{path}: cannot read: {e.strerror or e}") from None


def _loads(data: bytes, path: Path, line: int | None = None) -> Any:
    """Strict JSON (UTF-8, an optional BOM, no NaN or Infinity) from `data`, line `line` of `path` or all of it.

    A problem comes back as a RecordError in place of the value, naming the line (the caller decides
    whether to skip or raise).
    """

    def problem(message: str, line_in_data: int | None = None) -> RecordError:
        if line is not None:
            return RecordError(f"{path}:{line}: {message}")
        return RecordError(f"{path}:{line_in_data}: {message}" if line_in_data else f"{path}: {message}")

    try:
        text = data.decode("utf-8-sig")  # a BOM is harmless: accept it
    except UnicodeDecodeError as e:
        return problem(
            f"not UTF-8 text: bytes {data[e.start : e.end]!r} at byte {e.start}", data.count(b"\n", 0, e.start) + 1
        )
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as e:
        return problem(f"invalid JSON: {e.msg} (column {e.colno})", e.lineno)
    except _NotJSON as e:
        return problem(f"{e} is not valid JSON (write null or a string)")
    except RecursionError:
        return problem("nested too deeply to read")


class _NotJSON(ValueError):
    pass


def _refuse_constant(name: str):
    # Python's json reads NaN and Infinity, which are not JSON; records must stay readable by any parser.
    raise _NotJSON(name)


def _looks_like_jsonl(f: BinaryIO) -> bool:
    """Two non-blank lines, the first a whole object; reads the head of `f` and rewinds it."""
    lines = []
    for line in f:
        if line.strip():
            lines.append(line.strip().removeprefix(codecs.BOM_UTF8))
        if len(lines) == 2:
            break
    f.seek(0)
    return len(lines) == 2 and lines[0].startswith(b"{") and lines[0].endswith(b"}")


_DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".tsv", ".txt", ".arrow", ".gz", ".zip", ".xz", ".zst")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def looks_like_hub_id(text: str) -> bool:
    """`name` or `owner/name`, not a file name: anything else that does not exist is a missing file,
    not worth a trip to the hub."""
    return bool(_HUB_ID.fullmatch(text)) and not text.lower().endswith(_DATA_SUFFIXES)


def _load_hub_dataset(name: str, split: str):
    import datasets
    from huggingface_hub import constants

    # Offline, `datasets` reads its cache and fails fast; without a network it would retry for a minute
    # and more, so look first and say what to do.
    if not datasets.config.HF_HUB_OFFLINE and not _reachable(constants.ENDPOINT):
        raise RecordError(
            f"{name}: no such file, and the hub ({constants.ENDPOINT}) cannot be reached to load it "
            "as a dataset id (set HF_HUB_OFFLINE=1 to use the local datasets cache)"
        )
    return _load_dataset(name, name, split=split)


def _reachable(url: str, timeout: float = 3.0) -> bool:
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return True  # the server answered
    except (OSError, ValueError):
        return False
    return True


def _load_dataset(where: str, *args, **kwargs):
    import datasets

    try:
        return datasets.load_dataset(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - whatever `datasets` raises, the user needs the source named
        offline = " (HF_HUB_OFFLINE is set: only the local cache is read)" if datasets.config.HF_HUB_OFFLINE else ""
        raise RecordError(f"{where}: cannot load: {type(e).__name__}: {e}{offline}") from None


def read_records(path: str | os.PathLike) -> Iterator[Record]:
    """Canonical records from a JSON/JSONL/parquet file; a bad one raises RecordError with its location."""
    for where, raw in read_raw(path):
        if isinstance(raw, dict) and all(isinstance(raw.get(k), str) for k in ("messages", "tools")):
            try:  # `to_dataset`'s layout: nested fields as JSON strings
                raw = {k: json.loads(v) if k in _JSON_FIELDS and isinstance(v, str) else v for k, v in raw.items()}
            except json.JSONDecodeError as e:
                raise RecordError(f"{where}: a nested field is not valid JSON: {e}") from None
        yield Record.from_json(raw, where)


@contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[TextIO]:
    """A text file that appears at `path` only once fully written: temp file beside it, fsync, rename.

    A run killed mid-write leaves the old file (or none), never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new, empty temp file in `path`'s folder, with the mode a plain `open(path, "w")` gives: an existing
    file's mode, else 0666 less the umask. (`tempfile.mkstemp` makes it 0600, and reading the umask means
    setting it, which races with any other thread creating a file.)"""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = None
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
        except FileExistsError:
            continue
        if mode is not None:
            os.fchmod(fd, mode)
        return fd, tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name beside it", str(path))


def ensure_writable(path: str | os.PathLike) -> Path:
    """Check, before long work that ends in writing `path`, that it can be written: creates its folder;
    raises OSError naming the path when it is a directory or its folder is not writable."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(errno.EACCES, "its folder is not writable", str(path))
    return path


def write_jsonl_atomic(rows: Iterable[dict], path: str | os.PathLike, *, allow_nan: bool = True) -> int:
    """One JSON object per line, written atomically; returns the count. `allow_nan=False` refuses
    NaN and Infinity (ValueError), which Python writes as bare `NaN`, not JSON."""
    count = 0
    with atomic_open(path) as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, allow_nan=allow_nan) + "\n")
            count += 1
    return count


def write_json_atomic(path: str | os.PathLike, value: Any) -> None:
    with atomic_open(path) as f:
        json.dump(value, f, indent=1)


def write_records(records: Iterable[Record], path: str | os.PathLike) -> int:
    """Canonical records as JSONL, written atomically. Returns the count. Records must be strict JSON."""
    return write_jsonl_atomic((r.to_json() for r in records), path, allow_nan=False)


_JSON_FIELDS = ("messages", "tools", "answer", "meta")


def to_dataset(records: Iterable[Record]) -> datasets.Dataset:
    """A `datasets.Dataset` with one row per record; nested fields are JSON strings."""
    import datasets

    rows = [r.to_json() for r in records]
    return datasets.Dataset.from_list(
        [{k: (json.dumps(v, ensure_ascii=False) if k in _JSON_FIELDS else v) for k, v in row.items()} for row in rows]
    )


def from_dataset(dataset: Iterable[dict[str, Any]]) -> list[Record]:
    """Records back from `to_dataset`'s layout."""
    return [
        Record.from_json({k: (json.loads(v) if k in _JSON_FIELDS else v) for k, v in row.items()}, f"dataset[{i}]")
        for i, row in enumerate(dataset)
    ]
