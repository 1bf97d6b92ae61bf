"""The iterative reinforced fine-tuning loop: warm-up, then K rounds of deficiency → search → preference.

Every stage writes its outputs under `runs/<name>/` and records itself in `manifest.json`
(written atomically) when it is complete. A killed run started again with `resume=True` loads
what the manifest says is done and redoes only the rest; every stage seeds itself from the run
seed and its own name, so a resumed run computes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml

from rftfast import distributed
from rftfast.config import ConfigError, RunConfig, check_environment, validate
from rftfast.data.chat import Example, answer_content, fallback_prompt, render_example
from rftfast.data.io import atomic_open, read_records, write_json_atomic, write_records
from rftfast.data.record import Record
from rftfast.run_dir import keep_finished_metrics, open_run_dir
from rftfast.train.runtime import StepLog


class StopRequested(Exception):
    """Raised after the stage named in `stop_after` completes (used to test resuming)."""


@dataclass
class Manifest:
    """Which stages are complete, what they produced, and how long they took."""

    path: Path
    stages: dict = field(default_factory=dict)

    @classmethod
    def open(cls, run_dir: Path, resume: bool) -> Manifest:
        path = run_dir / "manifest.json"
        if resume and path.exists():
            return cls(path, json.loads(path.read_text())["stages"])
        return cls(path)

    def done(self, stage: str) -> bool:
        return stage in self.stages

    def complete(self, stage: str, seconds: float, summary: dict) -> None:
        self.stages[stage] = {"seconds": round(seconds, 2), **summary}
        if distributed.is_main():
            write_json_atomic(self.path, {"stages": self.stages})


def stage_seed(seed: int, stage: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(stage.encode())) % 2**31


@dataclass
class Run:
    """State carried between stages."""

    cfg: RunConfig
    manifest: Manifest
    stop_after: str | None = None
    model: object = None
    tokenizer: object = None
    train: list[Record] = field(default_factory=list)
    heldout: list[Record] = field(default_factory=list)
    train_examples: list[Example] = field(default_factory=list)
    heldout_examples: list[Example] = field(default_factory=list)
    log: StepLog | None = None

    def step_log(self, stage: str):
        """`log(step, metrics)` for the training loop of `stage`."""
        return None if self.log is None else functools.partial(self.log, stage)

    @property
    def dir(self) -> Path:
        return self.cfg.run_dir

    def stage(self, name: str, fn, load=None) -> dict:
        """Run `fn` unless the manifest has it (then `load` restores its outputs); record it."""
        if self.manifest.done(name):
            if load is not None:
                load()
            return self.manifest.stages[name]
        seed = stage_seed(self.cfg.seed, name)
        random.seed(seed)
        torch.manual_seed(seed)
        start = time.perf_counter()
        summary = fn(seed) or {}
        self.manifest.complete(name, time.perf_counter() - start, summary)
        distributed.barrier()  # rank 0's files (checkpoints, pairs, manifest) are on disk for every rank
        if self.stop_after == name:
            raise StopRequested(name)
        return self.manifest.stages[name]

    # ------------------------------------------------------------------------- model checkpoints

    def save_model(self, name: str) -> None:
        if not distributed.is_main():
            return
        path = self.dir / name / "model"
        tmp = path.with_name("model.tmp")
        self.model.save_pretrained(tmp, safe_serialization=True)
        self.tokenizer.save_pretrained(tmp)
        if path.exists():
            import shutil

            shutil.rmtree(path)
        os.replace(tmp, path)

    def load_model(self, name: str) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = self.dir / name / "model"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path).to(self.cfg.device).eval()


# ----------------------------------------------------------------------------- stages


def _records(cfg: RunConfig) -> tuple[list[Record], list[Record]]:
    if cfg.data.source == "toolworld":
        from rftfast.data.toolworld import generate, split

        total = cfg.data.num_train + cfg.data.num_heldout
        records = generate(round(total * 1.3), seed=cfg.data.seed, levels=tuple(cfg.data.levels))
        train, heldout = split(records, heldout_fraction=cfg.data.num_heldout / (total * 1.3), seed=cfg.data.seed)
        return train[: cfg.data.num_train], heldout[: cfg.data.num_heldout]
    records = list(read_records(cfg.data.source))
    if not records:
        raise ConfigError(f"data.source: {cfg.data.source} holds no records")
    if len(records) <= cfg.data.num_heldout:
        raise ConfigError(f"data.num_heldout: {cfg.data.source} holds {len(records)} records; holding out "
                          f"{cfg.data.num_heldout} leaves none to train on")
    rng = random.Random(cfg.data.seed)
    rng.shuffle(records)
    return records[cfg.data.num_heldout:][: cfg.data.num_train], records[: cfg.data.num_heldout]


def _render(run: Run, records: list[Record], split: str) -> tuple[list[Record], list[Example], int]:
    """Examples that fit `model.max_length`; the rest are dropped and counted (none fitting is an error)."""
    kept, examples = [], []
    for r in records:
        ex = render_example(r, run.tokenizer)
        if len(ex.input_ids) <= run.cfg.model.max_length:
            kept.append(r)
            examples.append(ex)
    if not kept:
        raise ConfigError(f"model.max_length: 0 of {len(records)} {split} records fit in "
                          f"model.max_length={run.cfg.model.max_length}")
    return kept, examples, len(records) - len(kept)


def stage_data(run: Run) -> None:
    from rftfast.train.model import load_policy

    cfg = run.cfg

    def build(seed):
        # Rank 0 makes the data, tokenizer and initial model; the other ranks load them, so all agree.
        counts = None
        if distributed.is_main():
            train, heldout = _records(cfg)
            write_records(train, run.dir / "data" / "train.jsonl")
            write_records(heldout, run.dir / "data" / "heldout.jsonl")
            corpus = [fallback_prompt(r.messages, r.tools) + answer_content(r) for r in train]
            run.model, run.tokenizer = load_policy(cfg.model, corpus, seed, cfg.device)
            _render(run, train, "training")  # refused here, before the stage counts as done
            _render(run, heldout, "held-out")
            run.save_model("initial")
            counts = {"train": len(train), "heldout": len(heldout)}
        distributed.barrier()
        if not distributed.is_main():
            run.load_model("initial")
        return distributed.broadcast(counts)

    def load():
        run.load_model("initial")

    summary = run.stage("data", build, load)
    run.train = list(read_records(run.dir / "data" / "train.jsonl"))
    run.heldout = list(read_records(run.dir / "data" / "heldout.jsonl"))
    run.train, run.train_examples, skipped_train = _render(run, run.train, "training")
    run.heldout, run.heldout_examples, skipped_heldout = _render(run, run.heldout, "held-out")
    summary.update(skipped_too_long={"train": skipped_train, "heldout": skipped_heldout})


def stage_eval(run: Run, name: str) -> dict:
    from rftfast.train.evaluate import heldout_accuracy

    def evaluate(seed):
        return heldout_accuracy(run.model, run.tokenizer, run.heldout, run.heldout_examples,
                                run.cfg.eval.max_new_tokens, run.cfg.eval.batch_size)

    return run.stage(f"{name}/eval", evaluate)


def _difficulty(run: Run) -> list[float]:
    how = run.cfg.warmup.difficulty
    if how == "level":
        return [float(r.meta.get("level", 0)) for r in run.train]
    if how == "steps":
        return [float(sum(1 + len(c.arguments) for c in r.answer)) if r.is_call else 0.0 for r in run.train]
    from rftfast.train.deficiency import answer_perplexities

    return answer_perplexities(run.model, run.tokenizer, run.train_examples, device=run.cfg.device)


def stage_warmup(run: Run) -> None:
    from rftfast.train.sft import make_schedule, train_sft

    def warmup(seed):
        schedule = make_schedule(run.train_examples, _difficulty(run), run.cfg.warmup, seed)
        losses = train_sft(run.model, run.tokenizer, schedule, run.cfg.warmup, seed, run.cfg.device,
                           train=run.cfg.train, log=run.step_log("warmup"))
        run.save_model("warmup")
        return {"steps": len(losses), "losses": losses[:: max(1, len(losses) // 200)], "final_loss": losses[-1]}

    run.stage("warmup", warmup, lambda: run.load_model("warmup"))


def _sample(run: Run, k: int) -> list[int]:
    rng = random.Random(stage_seed(run.cfg.seed, f"iter_{k}/sample"))
    idx = list(range(len(run.train)))
    rng.shuffle(idx)
    return sorted(idx[: run.cfg.deficiency.max_records])


def stage_iteration(run: Run, k: int) -> None:
    from rftfast.mcts import load_pairs, save_pairs
    from rftfast.train.deficiency import find_deficiencies
    from rftfast.train.preference import train_preference

    it = f"iter_{k}"
    pairs_path = run.dir / it / "pairs.jsonl"

    def deficiency(seed):
        idx = _sample(run, k)
        found = find_deficiencies(run.model, run.tokenizer, [run.train[i] for i in idx],
                                  [run.train_examples[i] for i in idx], run.cfg.deficiency, device=run.cfg.device)
        chosen = [idx[i] for i in found.selected]
        if distributed.is_main():
            write_json_atomic(run.dir / it / "deficient.json", chosen)
        return {"scored": len(idx), "deficient": len(chosen), "greedy_accuracy": found.greedy_accuracy}

    run.stage(f"{it}/deficiency", deficiency)
    deficient = json.loads((run.dir / it / "deficient.json").read_text())

    if run.cfg.extra_sft:  # the ablation: the same records, plain SFT on their ground truth
        _extra_sft(run, it, deficient)
        return

    def search(seed):
        from rftfast.train.search_stage import search_pairs

        records = [run.train[i] for i in deficient]
        policy = run.dir / ("warmup" if k == 1 else f"iter_{k - 1}") / "model"  # the checkpoint being searched
        pairs, stats = search_pairs(run.model, run.tokenizer, records, run.cfg.search, seed, model_path=policy)
        if distributed.is_main():
            save_pairs(pairs, pairs_path)
        return {"pairs": len(pairs), **stats}

    run.stage(f"{it}/search", search)
    pairs = [p.to_json() for p in load_pairs(pairs_path)]

    def preference(seed):
        history = train_preference(run.model, run.tokenizer, pairs, run.cfg.preference, seed, run.cfg.device,
                                   train=run.cfg.train, log=run.step_log(f"{it}/preference"))
        run.save_model(it)
        return {"steps": len(history), "losses": [h["loss"] for h in history],
                "reward_accuracy": sum(h["rewards/accuracies"] for h in history) / max(1, len(history))}

    run.stage(f"{it}/preference", preference, lambda: run.load_model(it))


def _extra_sft(run: Run, it: str, deficient: list[int]) -> None:
    from rftfast.train.sft import Schedule, train_sft

    def sft(seed):
        # The preference step's budget and optimizer settings, so only the objective differs.
        examples = [run.train_examples[i] for i in deficient] or run.train_examples
        pref = run.cfg.preference
        steps = max(1, round(pref.epochs * len(examples) / pref.batch_size))
        cfg = dataclasses.replace(run.cfg.warmup, lr=pref.lr, batch_size=pref.batch_size,
                                  warmup_steps=max(1, steps // 10), length_group=1)
        losses = train_sft(run.model, run.tokenizer, Schedule([examples], [steps], 0.0), cfg, seed,
                           run.cfg.device, desc="extra SFT (ablation)", train=run.cfg.train,
                           log=run.step_log(f"{it}/extra_sft"))
        run.save_model(it)
        return {"steps": len(losses), "losses": losses}

    run.stage(f"{it}/extra_sft", sft, lambda: run.load_model(it))


def run(cfg: RunConfig, resume: bool = False, stop_after: str | None = None, *, overwrite: bool = False,
        allow_config_change: bool = False) -> dict:
    """Run (or resume) the whole method; returns the report (also written to report.json/.png).

    The run directory is locked for the run's lifetime; a finished run there is only continued
    (`resume`) or replaced (`overwrite`) when asked, and resumed only under the config it was made
    with (`allow_config_change` to override); see `rftfast.run_dir`.
    """
    from rftfast.report import write_report

    validate(cfg)
    check_environment(cfg)
    as_given = cfg.to_dict()
    cfg.device = distributed.init(cfg.device)  # e.g. cuda -> cuda:<local rank>
    main = distributed.is_main()
    lock = None
    if main:
        lock = open_run_dir(cfg.run_dir, as_given, resume=resume, overwrite=overwrite,
                            allow_config_change=allow_config_change)
    try:
        if main:
            with atomic_open(cfg.run_dir / "config.yaml") as f:
                f.write(yaml.safe_dump(as_given, sort_keys=False))
        manifest = Manifest.open(cfg.run_dir, resume)
        if main:
            metrics = cfg.run_dir / "metrics.jsonl"
            damaged = keep_finished_metrics(metrics, manifest.done if resume else lambda stage: False)
            if damaged:
                print(f"warning: {metrics}: dropped {damaged} damaged line(s) (a torn write after a kill or full disk)")
        distributed.barrier()
        state = Run(cfg, manifest, stop_after,
                    log=StepLog(cfg.run_dir, cfg.tensorboard) if main else None)
        try:
            stage_data(state)
            stage_warmup(state)
            stage_eval(state, "warmup")
            for k in range(1, cfg.iterations + 1):
                stage_iteration(state, k)
                stage_eval(state, f"iter_{k}")
        finally:
            if state.log is not None:
                state.log.close()
        return write_report(cfg, state.manifest.stages, write=main)
    finally:
        if lock is not None:
            lock.release()
