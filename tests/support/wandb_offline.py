"""Read back what an offline W&B run logged: the history rows of `<dir>/wandb/offline-run-*/run-*.wandb`.

wandb has no public reader for its offline files (its own scanner moved into the Go `wandb-core`), so
this reads the format itself: a 7-byte header (":W&B", magic 0xBEE1, version 0), then LevelDB's log
format (32 KiB blocks of records: CRC32C, little-endian u16 length, type FULL/FIRST/MIDDLE/LAST), each
record a `wandb_internal.Record` protobuf, whose `history` rows hold the logged keys as JSON values.
Only the framing is ours; the records are parsed with wandb's own protobuf classes.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _records(data: bytes) -> list[bytes]:
    if len(data) < HEADER:  # not written yet
        return []
    if data[:4] != b":W&B":
        raise ValueError("not a W&B run file (no :W&B header)")
    out, parts, pos = [], [], HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # a block's tail too short for a record header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:  # zero padding up to the block's end
            pos += left
            continue
        if pos + HEADER + length > len(data):  # the record being written
            break
        parts.append(data[pos + HEADER : pos + HEADER + length])
        pos += HEADER + length
        if kind in (FULL, LAST):
            out.append(b"".join(parts))
            parts = []
    return out


def offline_runs(root: Path) -> list[Path]:
    """The `.wandb` files of the offline runs under `root/wandb` (by name: two runs started in the same second
    sort by their random ids)."""
    return sorted((Path(root) / "wandb").glob("offline-run-*/run-*.wandb"))


def _parsed(run_file: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    out = []
    for data in _records(Path(run_file).read_bytes()):
        record = pb.Record()
        record.ParseFromString(data)
        out.append(record)
    return out


def history(run_file: Path, timeout: float = 60.0) -> list[dict]:
    """The run's history rows in order: each the keys logged at one step, with `_step` (wandb's own keys
    `_runtime` and `_timestamp` are dropped).

    `run.finish()` returns before wandb's service process has written the file out (seen: a file of its
    header alone just after `finish`, whole a moment later), so this waits, up to `timeout` seconds, for the
    run's closing `exit` record."""
    deadline = time.monotonic() + timeout
    while True:
        records = _parsed(run_file)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    rows = []
    for record in records:
        if record.WhichOneof("record_type") != "history":
            continue
        row = {(item.key or "/".join(item.nested_key)): json.loads(item.value_json) for item in record.history.item}
        rows.append({k: v for k, v in row.items() if k not in ("_runtime", "_timestamp")})
    return rows
