"""Bad data is refused early, with its file and line: `convert_file` raises only RecordError, whose message
starts with `<file>:<line>` (or `<file>[<index>]`, or `<file>:` for the file as a whole), and the command
line prints `error: <message>` and exits 2, never a traceback. The cases are mutations of valid records of
every format: truncated, not UTF-8, nested too deeply, NaN, a BOM, and a wrong type or a missing key at
every key path."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from rftfast.cli import main
from rftfast.data.convert import convert_file, import_file
from rftfast.data.importers import import_hermes, import_xlam
from rftfast.data.io import read_raw, read_records, write_json_atomic, write_records
from rftfast.data.record import RecordError
from tests.data.test_importers import BFCL_ANSWER, BFCL_TEST, GLAIVE, HERMES, TOOLACE, XLAM

SAMPLES = {  # valid raw records of each format; xLAM also with its JSON strings as lists, to reach inside
    "toolace": [TOOLACE],
    "xlam": [XLAM, dict(XLAM, tools=json.loads(XLAM["tools"]), answers=json.loads(XLAM["answers"]))],
    "glaive": [GLAIVE],
    "hermes": [HERMES],
    "bfcl": [BFCL_TEST],
    "canonical": [import_xlam(XLAM)[0].to_json(), import_hermes(HERMES)[1].to_json()],
}
WRONG = (None, True, 0, -1, 2.5, "", "x", [], {}, [None], ["x"], {"k": None}, [[]], [{}])
DELETE = object()


def key_paths(value, path=()):
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from key_paths(item, (*path, key))


def replaced(root, path, value):
    if not path:
        return value
    root = copy.deepcopy(root)
    parent = functools.reduce(lambda node, key: node[key], path[:-1], root)
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return root


def nested(depth: int):
    value = "deep"
    for _ in range(depth):
        value = [value]
    return value


def deep_line(depth: int) -> bytes:
    return b'{"a": ' + b"[" * depth + b"]" * depth + b"}"


def mutated_lines(fmt: str) -> list[tuple[str, bytes]]:
    """(what, line 2 of a file whose line 1 is valid): every mutation of every sample of `fmt`."""
    lines = []
    for sample in SAMPLES[fmt]:
        text = json.dumps(sample)
        for path in key_paths(sample):
            for value in (*WRONG, DELETE) if path else WRONG:
                lines.append(
                    (
                        f"{path} = {'deleted' if value is DELETE else repr(value)}",
                        json.dumps(replaced(sample, path, value)).encode(),
                    )
                )
        for key in sample:
            lines.append((f"{key} nested 900 deep", json.dumps(replaced(sample, (key,), nested(900))).encode()))
            lines.append((f"{key} = NaN", json.dumps(replaced(sample, (key,), float("nan"))).encode()))
        lines.append(("nested 100000 deep", deep_line(100_000)))
        for k in range(1, 10):
            cut = len(text) * k // 10
            lines.append((f"truncated at {cut}", text[:cut].encode()))
            lines.append((f"byte 0xff at {cut}", text[:cut].encode() + b"\xff" + text[cut:].encode()))
        lines.append(("latin-1", text.replace("a", "\u00e9", 1).encode("latin-1", "replace")))
    return lines


def source_file(tmp_path: Path, fmt: str, lines: list[bytes]) -> Path:
    """A file of `fmt` holding `lines` (BFCL: its possible answers beside it)."""
    if fmt == "bfcl":
        (tmp_path / "possible_answer").mkdir(exist_ok=True)
        write_json_atomic(tmp_path / "possible_answer" / "BFCL_v3_simple.json", BFCL_ANSWER)
        path = tmp_path / "BFCL_v3_simple.json"
    else:
        path = tmp_path / f"{fmt}.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def outcome(fmt: str, src: Path, dst: Path, on_error: str = "stop") -> str:
    """'ok' (and the output reads back), 'refused at <location>', or what went wrong."""
    try:
        report = convert_file(fmt, src, dst, on_error)
    except RecordError as e:
        match = re.match(re.escape(str(src)) + r"(:\d+|\[\d+\]|:)", str(e))
        return f"refused at {match.group(0)[len(str(src)) :]}" if match else f"RecordError without location: {e}"
    except Exception as e:  # noqa: BLE001 - what the test looks for
        return f"{type(e).__name__}: {str(e)[:80]}"
    try:
        assert len(list(read_records(dst))) == report.written > 0
        assert not re.search(r"\bNaN\b|\bInfinity\b", dst.read_text(encoding="utf-8"))
    except Exception as e:  # noqa: BLE001
        return f"unreadable output: {type(e).__name__}: {str(e)[:80]}"
    return "ok"


@pytest.mark.parametrize("fmt", list(SAMPLES))
def test_fuzzed_records_are_refused_at_their_line_or_skipped_and_counted(tmp_path, fmt, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # a thousand atomic writes; durability is not tested here
    valid = json.dumps(SAMPLES[fmt][0]).encode()
    cases = mutated_lines(fmt)
    problems, refused = Counter(), 0
    for what, line in cases:
        got = outcome(fmt, source_file(tmp_path, fmt, [valid, line]), tmp_path / "out.jsonl")
        if got == "refused at :2":
            refused += 1
        elif got != "ok":
            problems[got] += 1
        must_fail = any(k in what for k in ("NaN", "truncated", "0xff", "100000", "latin-1"))
        if must_fail and got == "ok":
            problems[f"accepted: {what}"] += 1
    assert not problems, f"{sum(problems.values())} of {len(cases)}: {problems.most_common(8)}"
    # The same lines in one file with --on-error skip: each refused line skipped, counted, with its line.
    src = source_file(tmp_path, fmt, [valid] + [line for _, line in cases])
    report = convert_file(fmt, src, tmp_path / "out.jsonl", on_error="skip")
    assert (report.read, report.skipped) == (len(cases) + 1, refused)
    assert sum(report.reasons.values()) == refused
    assert all(re.match(re.escape(str(src)) + r":\d+", e) for e in report.examples)


def test_file_level_problems_are_refused_with_the_file(tmp_path):
    valid = json.dumps(XLAM)
    (tmp_path / "dir.jsonl").mkdir()
    cases = {
        "missing.jsonl": None,
        "dir.jsonl": None,
        "empty.jsonl": b"",
        "blank.jsonl": b"\n  \n",
        "array.json": f"[{valid},\n{valid[:40]}".encode(),  # one JSON document: the whole file is refused
        "latin1.json": f"[{valid},\n{valid.replace('a', chr(233), 1)}]".encode("latin-1"),
        "nan.json": f'[{valid},\n{{"query": NaN}}]'.encode(),
        "notes.txt": b"hello",
        "missing/data.parquet": None,
        "broken.parquet": b"PAR1 not really",
        "data/sub/x": None,  # looks like a path, not a hub id: no such file, no network
    }
    for name, content in cases.items():
        src = tmp_path / name
        if content is not None:
            src.write_bytes(content)
        got = outcome("xlam", src, tmp_path / "out.jsonl")
        assert got.startswith("refused at"), (name, got)
    assert outcome("xlam", tmp_path / "array.json", tmp_path / "o.jsonl") == "refused at :2"
    assert outcome("xlam", tmp_path / "latin1.json", tmp_path / "o.jsonl") == "refused at :2"
    with pytest.raises(RecordError, match="missing.jsonl: no such file"):
        convert_file("xlam", tmp_path / "missing.jsonl", tmp_path / "o.jsonl")
    with pytest.raises(RecordError, match="no records in the file"):
        convert_file("xlam", tmp_path / "blank.jsonl", tmp_path / "o.jsonl", on_error="skip")
    with pytest.raises(RecordError, match="no record converted, all 1 skipped"):
        convert_file("xlam", source_file(tmp_path, "xlam", [b"{"]), tmp_path / "o.jsonl", on_error="skip")
    # A record in a JSON array is named by its index.
    (tmp_path / "array2.json").write_text(json.dumps([XLAM, dict(XLAM, query=3)]))
    assert outcome("xlam", tmp_path / "array2.json", tmp_path / "o.jsonl") == "refused at [1]"


def test_nesting_too_deep_for_an_importer_is_a_bad_record(tmp_path):
    # json reads 600 levels; BFCL's schema-type mapping recurses two frames a level and cannot.
    deep = replaced(BFCL_TEST, ("function", 0, "parameters", "properties", "base", "items"), nested(600))
    src = source_file(tmp_path, "bfcl", [json.dumps(BFCL_TEST).encode(), json.dumps(deep).encode()])
    with pytest.raises(RecordError, match=r"BFCL_v3_simple.json:2: nested too deeply"):
        convert_file("bfcl", src, tmp_path / "out.jsonl")


def test_skip_reads_on_past_invalid_json_and_accepts_a_bom(tmp_path):
    valid = json.dumps(XLAM).encode()
    src = source_file(tmp_path, "xlam", [b"\xef\xbb\xbf" + valid, b"{not json", b"\xff\xfe", valid])
    report = convert_file("xlam", src, tmp_path / "out.jsonl", on_error="skip")
    assert (report.read, report.written, report.skipped) == (4, 2, 2)
    assert report.examples[0].startswith(f"{src}:2: invalid JSON")
    assert report.examples[1].startswith(f"{src}:3: not UTF-8")
    assert "skipped 1: invalid JSON" in report.summary()


def test_bfcl_needs_possible_answers_except_for_relevance(tmp_path):
    src = tmp_path / "BFCL_v3_simple.json"
    src.write_text(json.dumps(BFCL_TEST) + "\n")
    with pytest.raises(RecordError, match=r"BFCL_v3_simple.json\[0\] \(simple_12\): no possible answer"):
        convert_file("bfcl", src, tmp_path / "out.jsonl")
    irrelevance = tmp_path / "BFCL_v3_irrelevance.json"
    irrelevance.write_text(json.dumps(dict(BFCL_TEST, id="irrelevance_0")) + "\n")
    (record,) = import_file("bfcl", irrelevance)
    assert record.answer == "" and record.meta["category"] == "irrelevance"
    # A possible-answer file that is itself malformed is named with its line.
    (tmp_path / "possible_answer").mkdir()
    (tmp_path / "possible_answer" / src.name).write_text(json.dumps(BFCL_ANSWER) + "\n[1]\n")
    with pytest.raises(RecordError, match=r"possible_answer/BFCL_v3_simple.json:2: expected a possible answer"):
        convert_file("bfcl", src, tmp_path / "out.jsonl")


def test_fuzzed_possible_answers_are_refused_with_their_location(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    src = source_file(tmp_path, "bfcl", [json.dumps(BFCL_TEST).encode()] * 2)
    answers = tmp_path / "possible_answer" / src.name
    problems = Counter()
    for path in key_paths(BFCL_ANSWER):
        for value in (*WRONG, DELETE) if path else WRONG:
            answers.write_text(json.dumps(replaced(BFCL_ANSWER, path, value)) + "\n")
            try:
                convert_file("bfcl", src, tmp_path / "out.jsonl")
            except RecordError as e:
                if not re.match(f"({re.escape(str(src))}|{re.escape(str(answers))})" + r"(:\d+|\[\d+\])", str(e)):
                    problems[f"no location: {e}"] += 1
            except Exception as e:  # noqa: BLE001 - what the test looks for
                problems[f"{type(e).__name__}: {e}"] += 1
    assert not problems, problems.most_common(5)


def test_cli_says_file_and_line_and_exits_2(tmp_path, capsys):
    for fmt in SAMPLES:
        valid = json.dumps(SAMPLES[fmt][0]).encode()
        bad_lines = [
            line
            for what, line in mutated_lines(fmt)
            if what.startswith(("truncated at", "byte 0xff", "nested 100000")) or "NaN" in what
        ]
        for line in bad_lines[::4]:
            src = source_file(tmp_path, fmt, [valid, line])
            assert main(["data", "convert", "--format", fmt, str(src), str(tmp_path / "out.jsonl")]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"error: {src}:2") and "Traceback" not in err, err
    assert main(["data", "convert", "--format", "xlam", str(tmp_path / "none.jsonl"), str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'none.jsonl'}: no such file")


def test_offline_hub_id_fails_fast_and_names_it(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    start = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rftfast.cli",
            "data",
            "convert",
            "--format",
            "xlam",
            "nobody/no-such-dataset",
            str(tmp_path / "out.jsonl"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - start < 60  # python and `datasets` start-up on a busy machine; not a minute of retries
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: nobody/no-such-dataset: cannot load") and "HF_HUB_OFFLINE" in done.stderr


def test_unreachable_hub_is_found_out_in_seconds(monkeypatch):
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(RecordError, match=r"nobody/no-such-dataset: no such file, and the hub .* cannot be reached"):
        list(read_raw("nobody/no-such-dataset"))
    assert time.monotonic() - start < 10


def test_written_files_have_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        write_records(import_xlam(XLAM), tmp_path / "records.jsonl")
        write_json_atomic(tmp_path / "value.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "records.jsonl").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "value.json").stat().st_mode & 0o777 == 0o644
