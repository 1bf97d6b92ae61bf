"""What a run carries from stage to stage (`RunState`), and the manifest of the stages it has finished.

Every stage writes its outputs under `runs/<name>/` and records itself in `manifest.json` (written
atomically) when it is complete. A resumed run loads what the manifest says is done and redoes only
the rest; every stage seeds itself from the run seed and its own name, so a resumed run computes
exactly what an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import os
import random
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from rftfast import distributed
from rftfast.config import RunConfig
from rftfast.data.chat import Example
from rftfast.data.io import write_json_atomic
from rftfast.data.record import Record
from rftfast.train.compute import Compute, count_compute
from rftfast.train.loop import StepLogger
from rftfast.train.runtime import StepLog

if TYPE_CHECKING:  # transformers is imported where a model is loaded
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class StopRequested(Exception):
    """Raised after the stage named in `stop_after` completes (used to test resuming)."""


@dataclass
class Manifest:
    """Which stages are complete, what they produced (their summaries), and how long they took."""

    path: Path
    stages: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def open(cls, run_dir: Path, resume: bool) -> Manifest:
        path = run_dir / "manifest.json"
        if resume and path.exists():
            return cls(path, json.loads(path.read_text())["stages"])
        return cls(path)

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def summary(self, stage: str) -> dict:
        """A copy of what `stage` recorded (changing it changes nothing on record)."""
        return copy.deepcopy(self.stages[stage])

    def summaries(self) -> dict[str, dict]:
        """A copy of every finished stage's record, in the order they finished."""
        return copy.deepcopy(self.stages)

    def complete(self, stage: str, seconds: float, summary: dict) -> None:
        self.stages[stage] = {"seconds": round(seconds, 2), **copy.deepcopy(summary)}
        if distributed.is_main():
            write_json_atomic(self.path, {"stages": self.stages})


def stage_seed(seed: int, stage: str) -> int:
    """The seed of stage `stage` of a run seeded with `seed` (the same whether or not the run resumed)."""
    return (seed * 1_000_003 + zlib.crc32(stage.encode())) % 2**31


@dataclass
class RunState:
    """State carried between stages: the config, the manifest, the policy and the rendered data."""

    cfg: RunConfig
    manifest: Manifest
    stop_after: str | None = None
    model: PreTrainedModel | None = None
    tokenizer: PreTrainedTokenizerBase | None = None
    train: list[Record] = field(default_factory=list)
    heldout: list[Record] = field(default_factory=list)
    train_examples: list[Example] = field(default_factory=list)
    heldout_examples: list[Example] = field(default_factory=list)
    log: StepLog | None = None
    compute: Compute = field(default_factory=Compute)  # the running stage's model compute (`count_compute`)

    def step_log(self, stage: str) -> StepLogger | None:
        """`log(step, metrics)` for the training loop of `stage`."""
        return None if self.log is None else functools.partial(self.log, stage)

    @property
    def call_format(self) -> str:
        """How the policy writes its calls: `model.call_format`, else its chat template's (`answer_format`)."""
        from rftfast.mcts.pairs import answer_format

        return answer_format(self.tokenizer, call_format=self.cfg.model.call_format)

    @property
    def dir(self) -> Path:
        return self.cfg.run_dir

    def stage(self, name: str, fn: Callable[[int], dict | None], load: Callable[[], None] | None = None) -> dict:
        """Run `fn(seed)` unless the manifest has stage `name` (then `load` restores its outputs); record
        its summary, and return a copy of it."""
        if self.manifest.done(name):
            if load is not None:
                load()
            return self.manifest.summary(name)
        seed = stage_seed(self.cfg.seed, name)
        random.seed(seed)
        torch.manual_seed(seed)
        start = time.perf_counter()
        with count_compute(self.model) if self.model is not None else contextlib.nullcontext(Compute()) as compute:
            self.compute = compute
            summary = fn(seed) or {}
        if compute.token_passes:
            summary = {**summary, "compute": compute.to_json()}
        self.manifest.complete(name, time.perf_counter() - start, summary)
        distributed.barrier()  # rank 0's files (checkpoints, pairs, manifest) are on disk for every rank
        if self.stop_after == name:
            raise StopRequested(name)
        return self.manifest.summary(name)

    # ------------------------------------------------------------------------- model checkpoints

    def save_model(self, name: str) -> None:
        """The policy and tokenizer to `<run>/<name>/model` (rank 0; atomically, by renaming a full copy)."""
        if not distributed.is_main():
            return
        path = self.dir / name / "model"
        tmp = path.with_name("model.tmp")
        self.model.save_pretrained(tmp, safe_serialization=True)
        self.tokenizer.save_pretrained(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)

    def load_model(self, name: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = self.dir / name / "model"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path).to(self.cfg.device).eval()
