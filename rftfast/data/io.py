"""Reading raw and canonical record files, writing them atomically, and `datasets` integration.

Local JSON and JSONL are read with the json module, line by line, so an error names its line and
no value is reshaped (Arrow would unify differing argument dicts into one struct, adding nulls).
Parquet files and hub ids go through `datasets.load_dataset`. Canonical records go into a
`datasets.Dataset` in native nested columns, with JSON text only at the leaves whose shape differs between
records, for the same reason (`to_dataset`).
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

from rftfast.data.record import TOOL_LINKS, Record, RecordError, _canonical_tool_call, normalize_tool

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
    """Canonical records from a JSON/JSONL/parquet file; a bad one raises RecordError with its location.

    Rows in `to_dataset`'s layout (its parquet file, or one of the previous release's, whose nested fields were
    all JSON strings) read as the records they hold.
    """
    for where, raw in read_raw(path):
        yield _record_from_row(raw, where) if _is_dataset_row(raw) else Record.from_json(raw, where)


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


# `to_dataset`'s layout. Where a value's shape differs from row to row (a call's arguments, a tool's JSON Schema,
# `meta`), Arrow cannot give it one type: unifying the dicts would add null-filled keys, and a value that is a
# string here and a number there does not cast at all. Those leaves are JSON text, as OpenAI's wire format carries
# `arguments`; everything else is a native column. Python lists (not `datasets.Sequence`, which turns a list of
# dicts into a dict of lists) for list<struct>, which every `datasets` release from 2.21 reads the same way.
_MESSAGE_KEYS = ("role", "content", *TOOL_LINKS, "tool_calls")


def _features() -> datasets.Features:
    import datasets

    text = datasets.Value("string")
    call = {"name": text, "arguments": text}  # arguments: JSON text
    message = {
        "role": text,
        "content": text,
        **{key: text for key in TOOL_LINKS},
        "tool_calls": [{"id": text, "type": text, "function": call}],
    }
    tool = {"type": text, "function": {"name": text, "description": text, "parameters": text}}  # parameters: JSON
    return datasets.Features(
        {
            "id": text,
            "messages": [message],
            # Each message's own keys, in order: Arrow gives every message every field of the struct, null where it
            # had none, and a null `content` or `name` is not the same record as a missing one.
            "message_keys": [[text]],
            "tools": [tool],
            # A list of calls and a text cannot share an Arrow type: one of these two is null.
            "answer_calls": [call],
            "answer_text": text,
            "meta": text,  # JSON: its keys and value types differ by source
        }
    )


def to_dataset(records: Iterable[Record]) -> datasets.Dataset:
    """A `datasets.Dataset` with one row per record, in native nested columns (the shapes TRL and chat templates
    take for tool-calling data):

    - `id`: string;
    - `messages`: list of {role, content, name, tool_call_id, tool_calls: list of {id, type,
      function: {name, arguments}}}, OpenAI's message shape;
    - `message_keys`: list of list of string, the keys each message has (Arrow fills the ones it lacks with null);
    - `tools`: list of {type: "function", function: {name, description, parameters}};
    - `answer_calls`: list of {name, arguments} when the answer is calls (possibly none), else null;
    - `answer_text`: the answer when it is text, else null;
    - `meta`: JSON text.

    Three leaves are JSON text, because their shape differs between rows and Arrow cannot give them one type:
    the calls' `arguments` (as in OpenAI's wire format), the tools' `parameters` (JSON Schema) and `meta`.
    (Rows handed to a chat template as they are carry those leaves as strings, and nulls for the keys a message
    lacks; `from_dataset` gives the records' own dicts.) `from_dataset` gives back exactly what writing the
    records to JSONL and reading them back gives, key order included. A message
    with a key outside {role, content, name, tool_call_id, tool_calls}, or a content that is not a string or
    null, has no column here and raises RecordError (a ValueError): `write_records` keeps any JSON. No records
    give an empty dataset with these columns.
    """
    import datasets

    features = _features()
    rows = [_row(record, f"record {i} ({record.id!r})") for i, record in enumerate(records)]
    return datasets.Dataset.from_dict({name: [row[name] for row in rows] for name in features}, features=features)


def from_dataset(dataset: Iterable[dict[str, Any]]) -> list[Record]:
    """Records back from `to_dataset`'s rows (a `datasets.Dataset`, or rows read from its parquet file); the
    previous release's layout, nested fields as JSON strings, reads too."""
    return [_record_from_row(row, f"dataset[{i}]") for i, row in enumerate(dataset)]


def _row(record: Record, where: str) -> dict:
    messages = []
    for i, m in enumerate(record.messages):
        at = f"{where}.messages[{i}]"
        if extra := [key for key in m if key not in _MESSAGE_KEYS]:
            raise RecordError(f"{at}: key {extra[0]!r} has no column in a dataset (only {', '.join(_MESSAGE_KEYS)})")
        for key in ("role", "content", *TOOL_LINKS):
            _text_or_null(m.get(key), f"{at}.{key}")
        calls = m.get("tool_calls")
        if calls is not None:
            calls = [_canonical_tool_call(c, f"{at}.tool_calls[{j}]") for j, c in enumerate(calls)]
            calls = [dict(c, function=_call_row(c["function"])) for c in calls]
        messages.append({**{key: m.get(key) for key in _MESSAGE_KEYS}, "tool_calls": calls})
    tools = []
    for i, tool in enumerate(record.tools):
        fn = normalize_tool(tool, f"{where}.tools[{i}]")["function"]
        _text_or_null(fn["description"], f"{where}.tools[{i}].description")
        tools.append({"type": "function", "function": dict(fn, parameters=_json_text(fn["parameters"]))})
    text = record.answer if isinstance(record.answer, str) else None
    return {
        "id": str(record.id),
        "messages": messages,
        "message_keys": [list(m) for m in record.messages],
        "tools": tools,
        "answer_calls": None if text is not None else [_call_row(c.to_json()) for c in record.answer],
        "answer_text": text,
        "meta": _json_text(record.meta),
    }


def _call_row(call: dict) -> dict:
    return {"name": call["name"], "arguments": _json_text(call["arguments"])}


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _text_or_null(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, str):
        raise RecordError(f"{where}: a dataset column holds a string or null here, got {value!r:.80}")


def _is_dataset_row(raw: Any) -> bool:
    """A row of `to_dataset`'s layout, this release's or the previous one's (nested fields as JSON strings)."""
    if not isinstance(raw, dict):
        return False
    if "answer" not in raw and ("answer_calls" in raw or "answer_text" in raw):
        return True
    return all(isinstance(raw.get(k), str) for k in ("messages", "tools"))


def _record_from_row(row: dict, where: str) -> Record:
    """The record in a row of `to_dataset`'s layout; one that does not hold a record raises RecordError."""
    if isinstance(row.get("messages"), str):  # the previous release's layout: all nested fields JSON strings
        try:
            row = {k: json.loads(v) if k in _JSON_FIELDS and isinstance(v, str) else v for k, v in row.items()}
        except json.JSONDecodeError as e:
            raise RecordError(f"{where}: a nested field is not valid JSON: {e}") from None
        return Record.from_json(row, where)
    try:
        messages = row.get("messages")
        keys = row.get("message_keys")
        if isinstance(messages, list):
            if keys is None:  # rows written without it: take a null as a key the message did not have
                keys = [[k for k, v in m.items() if v is not None or k in ("role", "content")] for m in messages]
            if not isinstance(keys, list) or len(keys) != len(messages):
                raise RecordError(f"{where}.message_keys: expected one list of keys per message")
            # Arguments stay JSON text here: Record.from_json reads OpenAI's wire format and drops a null call id.
            messages = [{k: m.get(k) for k in ks} for m, ks in zip(messages, keys)]
        tools = row.get("tools")
        if isinstance(tools, list):
            tools = [_with_schema(t) for t in tools]
        answer = row.get("answer_text")
        if answer is None:
            answer = row.get("answer_calls")
        meta = row.get("meta")
        meta = json.loads(meta) if isinstance(meta, str) else meta
    except json.JSONDecodeError as e:
        raise RecordError(f"{where}: a JSON field is not valid JSON: {e}") from None
    except (AttributeError, TypeError) as e:
        raise RecordError(f"{where}: not a row of a records dataset: {e}") from None
    row = {"id": row.get("id") or "", "messages": messages, "tools": tools, "answer": answer, "meta": meta}
    return Record.from_json(row, where)


def _with_schema(tool: Any) -> Any:
    """A tool of a row with its JSON Schema `parameters` read from JSON text."""
    fn = tool.get("function") if isinstance(tool, dict) else None
    if isinstance(fn, dict) and isinstance(fn.get("parameters"), str):
        return dict(tool, function=dict(fn, parameters=json.loads(fn["parameters"])))
    return tool


# The previous release's layout: these fields as JSON strings.
_JSON_FIELDS = ("messages", "tools", "answer", "meta")
