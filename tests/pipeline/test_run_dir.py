"""Nothing finished is lost: the run lock, refusing to replace or silently re-configure a finished run,
a torn metrics line, a full disk; and data that cannot train is refused before the warm-up."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from rftfast.cli import main
from rftfast.config import ConfigError
from rftfast.data.io import write_records
from rftfast.data.toolworld import generate
from rftfast.pipeline import StopRequested, run
from rftfast.stages.run_dir import RunDirError, RunLock, config_changes, read_step_log
from tests.pipeline.test_pipeline import SMALL, small


@pytest.fixture(scope="module")
def finished_dir(tmp_path_factory):
    """A finished small run; each test works on its own copy."""
    tmp = tmp_path_factory.mktemp("finished")
    cfg = small(tmp, "done")
    run(cfg)
    return cfg.run_dir


@pytest.fixture
def copy_of(finished_dir, tmp_path):
    shutil.copytree(finished_dir, tmp_path / "done")
    return tmp_path


def _stages(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())["stages"]


def test_resume_survives_a_torn_last_metrics_line(copy_of, capsys):
    run_dir = copy_of / "done"
    before = (run_dir / "metrics.jsonl").read_text()
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"stage":"x","lo')  # the disk filled (or the process died) mid-line
    report = run(small(copy_of, "done"), resume=True)
    assert set(report["accuracy"]) == {"warmup", "iter_1"}
    assert (run_dir / "metrics.jsonl").read_text() == before
    assert "dropped 1 damaged line" in capsys.readouterr().out
    assert read_step_log(run_dir / "metrics.jsonl")[1] == 0


def test_a_finished_run_is_not_replaced_without_overwrite(copy_of, capsys):
    run_dir = copy_of / "done"
    stages, metrics = _stages(run_dir), (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(RunDirError, match=rf"{len(stages)} finished stages; pass --resume .* or --overwrite"):
        run(small(copy_of, "done"))
    assert _stages(run_dir) == stages and (run_dir / "metrics.jsonl").read_text() == metrics
    assert (
        main(["run", "--set", f"out_dir={copy_of}", "--set", "name=done", *sum((["--set", s] for s in SMALL), [])]) == 2
    )
    assert "pass --resume to continue it or --overwrite" in capsys.readouterr().err
    with pytest.raises(StopRequested):
        run(small(copy_of, "done"), overwrite=True, stop_after="data")
    assert list(_stages(run_dir)) == ["data"] and not (run_dir / "iter_1").exists()
    with pytest.raises(RunDirError, match="contradict"):
        run(small(copy_of, "done"), resume=True, overwrite=True)


def test_resume_with_a_changed_config_names_the_keys(copy_of):
    run_dir = copy_of / "done"
    with pytest.raises(RunDirError, match=r"preference.lr: 5e-05 -> 0.001; search.rounds: 2 -> 3"):
        run(small(copy_of, "done", "preference.lr=1e-3", "search.rounds=3"), resume=True)
    run(small(copy_of, "done", "tensorboard=true", "report_to=[tensorboard]"), resume=True)  # mirrors only
    run(small(copy_of, "done", "search.rounds=3"), resume=True, allow_config_change=True)
    logged = [json.loads(line) for line in (run_dir / "config_changes.jsonl").read_text().splitlines()]
    assert logged == [{"resumed_with": ["search.rounds: 2 -> 3"]}]
    assert config_changes({"a": {"b": 1}, "iterations": 1}, {"a": {"b": 2}, "iterations": 5}) == ["a.b: 1 -> 2"]


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from rftfast.stages.run_dir import RunLock
lock = RunLock(Path(sys.argv[1]))  # held while this process lives
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_run_on_the_same_directory_is_refused_with_the_holders_pid(tmp_path):
    run_dir = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirError, match=rf"in use by another run \(PID {holder.pid}\)"):
            run(small(tmp_path, "busy"))
        assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # nothing written beside the lock
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    RunLock(run_dir).release()  # a killed holder leaves no stale lock


def test_a_full_disk_says_what_ran_out_and_where(monkeypatch, tmp_path, capsys):
    import rftfast.pipeline

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "r" / "warmup" / "model.tmp"))

    monkeypatch.setattr(rftfast.pipeline, "run", full)
    assert main(["run", "--set", f"out_dir={tmp_path}", "--set", "name=r"]) == 3
    err = capsys.readouterr().err
    assert "no space left on the device while writing" in err and "model.tmp" in err and "--resume" in err


def test_run_files_respect_the_umask(finished_dir):
    for name in ("manifest.json", "config.yaml", "report.json", "metrics.jsonl", "data/train.jsonl"):
        mode = (finished_dir / name).stat().st_mode & 0o777
        assert mode == 0o666 & ~CURRENT_UMASK, (name, oct(mode))


CURRENT_UMASK = os.umask(0)
os.umask(CURRENT_UMASK)


@pytest.mark.parametrize(
    "what,extra,match",
    [
        ("empty", [], r"data.source: .* holds no records"),
        ("few", ["data.num_heldout=12"], r"data.num_heldout: .* holds 10 records; holding out 12 leaves none"),
        ("ok", ["model.max_length=2"], r"model.max_length: 0 of \d+ training records fit in model.max_length=2"),
    ],
)
def test_data_that_cannot_train_is_refused_before_the_warmup(tmp_path, what, extra, match):
    source = tmp_path / f"{what}.jsonl"
    write_records(generate({"empty": 0, "few": 10, "ok": 30}[what], seed=0), source)
    cfg = small(tmp_path, what, f"data.source={source}", *extra)
    with pytest.raises(ConfigError, match=match):
        run(cfg)
    manifest = cfg.run_dir / "manifest.json"
    assert not manifest.exists() or "data" not in _stages(cfg.run_dir)
