"""The iterative reinforced fine-tuning loop: warm-up, then K rounds of deficiency → search → preference.

`run` only wires the stages (`rftfast.stages`) in order around the run directory's guards
(`rftfast.stages.run_dir`): each stage records itself in `manifest.json` when complete, and a killed run started
again with `resume=True` redoes only what the manifest does not have (see `rftfast.stages.state`).
"""

from __future__ import annotations

import yaml

from rftfast import distributed
from rftfast.config import RunConfig, check_environment, validate
from rftfast.data.io import atomic_open
from rftfast.stages import (
    Manifest,
    RunState,
    StopRequested,
    stage_data,
    stage_eval,
    stage_iteration,
    stage_warmup,
)
from rftfast.stages.run_dir import keep_finished_metrics, open_run_dir
from rftfast.train.runtime import StepLog, flush_denormals

__all__ = ["StopRequested", "run"]


def run(
    cfg: RunConfig,
    resume: bool = False,
    stop_after: str | None = None,
    *,
    overwrite: bool = False,
    allow_config_change: bool = False,
) -> dict:
    """Run (or resume) the whole method; returns the report (also written to report.json/.png).

    The run directory is locked for the run's lifetime; a finished run there is only continued
    (`resume`) or replaced (`overwrite`) when asked, and resumed only under the config it was made
    with (`allow_config_change` to override); see `rftfast.stages.run_dir`. `stop_after` names a stage after
    which `StopRequested` is raised (how the tests kill a run).
    """
    from rftfast.stages.report import write_report

    validate(cfg)
    check_environment(cfg)
    as_given = cfg.to_dict()
    cfg.device = distributed.init(cfg.device)  # e.g. cuda -> cuda:<local rank>
    main = distributed.is_main()
    lock = None
    if main:
        lock = open_run_dir(
            cfg.run_dir, as_given, resume=resume, overwrite=overwrite, allow_config_change=allow_config_change
        )
    try:
        manifest = _open_manifest(cfg, as_given, resume)
        log = None
        if main:
            log = StepLog(
                cfg.run_dir, cfg.reporters, wandb_project=cfg.wandb_project, run_name=cfg.name, config=as_given
            )
        state = RunState(cfg, manifest, stop_after, log=log)
        failed = True  # until the last stage returns: a W&B run a stage's error ended is marked failed
        try:
            with flush_denormals(cfg.train.flush_denormal):
                stage_data(state)
                stage_warmup(state)
                stage_eval(state, "warmup")
                for k in range(1, cfg.iterations + 1):
                    stage_iteration(state, k)
                    stage_eval(state, f"iter_{k}", previous="warmup" if k == 1 else f"iter_{k - 1}")
            failed = False
        finally:
            if state.log is not None:
                state.log.close(failed=failed)
        return write_report(cfg, manifest.summaries(), write=main)
    finally:
        if lock is not None:
            lock.release()
        distributed.leave()


def _open_manifest(cfg: RunConfig, as_given: dict, resume: bool) -> Manifest:
    """The run's config written beside it, its manifest (resumed: as it was left), and its step log cut
    back to the finished stages' lines (a resumed stage logs its steps again)."""
    manifest = Manifest.open(cfg.run_dir, resume)
    if distributed.is_main():
        with atomic_open(cfg.run_dir / "config.yaml") as f:
            f.write(yaml.safe_dump(as_given, sort_keys=False))
        metrics = cfg.run_dir / "metrics.jsonl"
        damaged = keep_finished_metrics(metrics, manifest.done if resume else lambda stage: False)
        if damaged:
            print(f"warning: {metrics}: dropped {damaged} damaged line(s) (a torn write after a kill or full disk)")
    distributed.barrier()
    return manifest
