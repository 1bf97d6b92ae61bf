"""The run directory's guards: one process at a time, no finished run replaced by accident, no resume
under a config its results were not made with, and a step log that survives a torn last line.

`open_run_dir` is called once, by the main process, before a run writes anything.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import yaml

from rftfast.data.io import atomic_open, write_json_atomic, write_jsonl_atomic

LOCK_NAME = ".lock"
# Keys a resume may change: they do not change what a finished stage computed (more iterations
# extend the run; the run folder may be moved; TensorBoard and W&B only mirror metrics.jsonl).
RESUMABLE_KEYS = frozenset({"iterations", "out_dir", "tensorboard", "report_to", "wandb_project"})


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked; the message says why and what to pass instead."""


class RunLock:
    """An exclusive `flock` on `<run>/.lock`, holding the owner's PID. The kernel drops it when the
    process ends, however it ends, so a killed run never leaves a stale lock behind."""

    def __init__(self, run_dir: Path) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / LOCK_NAME
        self.file = self.path.open("a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            raise RunDirError(
                f"{run_dir} is in use by another run (PID {holder}); wait for it to finish or use another name"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def release(self) -> None:
        if not self.file.closed:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


def _flatten(values: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(old: dict, new: dict) -> list[str]:
    """`key: old -> new` for every key that differs and matters to finished stages."""
    a, b = _flatten(old), _flatten(new)
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if k not in RESUMABLE_KEYS and a.get(k) != b.get(k)
    ]


def _finished_stages(run_dir: Path) -> int:
    try:
        return len(json.loads((run_dir / "manifest.json").read_text())["stages"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def open_run_dir(run_dir: Path, config: dict, *, resume: bool, overwrite: bool, allow_config_change: bool) -> RunLock:
    """Lock `run_dir` and check that starting (or resuming) there loses nothing; returns the lock.

    - a run directory with finished stages is refused unless `resume` (continue it) or `overwrite`
      (delete it and start again) says what to do with it;
    - `resume` under a config that differs from the run's `config.yaml` in a key that matters is
      refused with the differing keys, unless `allow_config_change` (the changes are then appended
      to `config_changes.jsonl`, so the report's config is never silently another's).
    """
    if resume and overwrite:
        raise RunDirError("--resume and --overwrite contradict each other; pass one")
    lock = RunLock(run_dir)
    try:
        finished = _finished_stages(run_dir)
        if finished and not resume and not overwrite:
            raise RunDirError(
                f"{run_dir} holds a run with {finished} finished stages; pass --resume to "
                "continue it or --overwrite to delete it and start again"
            )
        if overwrite:
            for child in run_dir.iterdir():
                if child.name != LOCK_NAME:
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        saved = run_dir / "config.yaml"
        if resume and saved.exists():
            changes = config_changes(yaml.safe_load(saved.read_text()) or {}, config)
            if changes and not allow_config_change:
                raise RunDirError(
                    "--resume with a config that differs from the run's config.yaml in "
                    + "; ".join(changes)
                    + " (pass --allow-config-change to resume anyway)"
                )
            if changes:
                with (run_dir / "config_changes.jsonl").open("a") as f:
                    f.write(json.dumps({"resumed_with": changes}) + "\n")
    except BaseException:
        lock.release()
        raise
    return lock


def read_step_log(path: Path) -> tuple[list[dict], int]:
    """The rows of a `metrics.jsonl` and how many lines could not be read (a torn last line after a
    kill or a full disk, or any damaged line): those are dropped and counted, never fatal."""
    rows, damaged = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            damaged += 1
            continue
        if isinstance(row, dict) and isinstance(row.get("stage"), str):
            rows.append(row)
        else:
            damaged += 1
    return rows, damaged


def keep_finished_metrics(path: Path, is_finished: Callable[[str], bool]) -> int:
    """Rewrite `metrics.jsonl` with the rows of finished stages only (a stage that was killed runs
    again from its first step and logs anew); returns the number of damaged lines dropped."""
    if not path.exists():
        return 0
    rows, damaged = read_step_log(path)
    write_jsonl_atomic([r for r in rows if is_finished(r["stage"])], path)
    return damaged


def fork_run(source: Path, target: Path, stages: tuple[str, ...], config: dict) -> None:
    """Start the run `target` from `source`'s finished `stages` (their folders and manifest records), under
    `config`, so that resuming it redoes none of them: how `rftfast compare` gives two arms one warm-up. A
    target that already has a manifest is left as it is (a comparison started again continues it)."""
    if (target / "manifest.json").exists():
        return
    finished = json.loads((source / "manifest.json").read_text())["stages"]
    missing = [stage for stage in stages if stage not in finished]
    if missing:
        raise RunDirError(f"{source}: stages {missing} are not finished; nothing to fork from")
    folders = {stage.split("/")[0] for stage in stages} | {"initial"}  # "initial": the data stage's checkpoint
    target.mkdir(parents=True, exist_ok=True)
    for folder in sorted(folders):
        if (source / folder).is_dir():
            shutil.copytree(source / folder, target / folder, dirs_exist_ok=True)
    with atomic_open(target / "config.yaml") as f:
        f.write(yaml.safe_dump(config, sort_keys=False))
    # The manifest last: until it exists, the target is not a run (an interrupted fork is simply redone).
    write_json_atomic(target / "manifest.json", {"stages": {stage: finished[stage] for stage in stages}})
