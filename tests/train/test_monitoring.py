"""Monitoring: `report_to` (TensorBoard, W&B offline) mirrors metrics.jsonl at one global step across stages,
held-out accuracy is a metrics row, and a mirror whose package is missing stops the run before it starts."""

import importlib.util
import json

import pytest

from rftfast.cli import main
from rftfast.config import ConfigError, check_environment, load_config
from rftfast.stages.run_dir import config_changes
from rftfast.train.runtime import StepLog
from tests.support import wandb_offline
from tests.support.tiny_run import SMALL

ROWS = [  # (stage, step, metrics, series): two training steps, then an evaluation's row
    ("warmup", 0, {"loss": 2.5, "lr": 1e-3, "grad_norm": 3.0}, None),
    ("warmup", 1, {"loss": 2.0, "lr": 5e-4, "grad_norm": 1.5}, None),
    ("warmup/eval", 0, {"accuracy": 0.25, "accuracy/level 1": 0.5}, "eval"),
]


@pytest.fixture
def wandb_env(tmp_path, monkeypatch):
    """wandb importable, quiet, and writing nothing outside `tmp_path` (its settings and caches included)."""
    pytest.importorskip("wandb")
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb_home" / var.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_API_KEY", "WANDB_RUN_ID", "WANDB_RESUME"):
        monkeypatch.delenv(var, raising=False)


def _log(log: StepLog, rows) -> None:
    for stage, step, metrics, series in rows:
        log(stage, step, metrics, series=series)


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_wandb_offline_run_holds_every_row_at_its_global_step(tmp_path, wandb_env):
    run_dir = tmp_path / "run"
    log = StepLog(run_dir, ["wandb"], run_name="tiny", config={"seed": 0})  # WANDB_MODE unset: offline
    _log(log, ROWS)
    log.close()
    (run_file,) = wandb_offline.offline_runs(run_dir)
    rows = wandb_offline.history(run_file)
    assert [r["_step"] for r in rows] == [r["global_step"] for r in _jsonl(run_dir / "metrics.jsonl")] == [0, 1, 2]
    assert rows[0] == {"_step": 0, "warmup/loss": 2.5, "warmup/lr": 1e-3, "warmup/grad_norm": 3.0}
    assert rows[2] == {"_step": 2, "eval/accuracy": 0.25, "eval/accuracy/level 1": 0.5}  # the series, not the stage

    # A resumed run continues the global step, in a W&B run of its own (the old one's last steps may be redone).
    log = StepLog(run_dir, ["wandb"], run_name="tiny")
    log("iter_1/preference", 0, {"loss": 0.7})
    log.close()
    (second,) = set(wandb_offline.offline_runs(run_dir)) - {run_file}
    assert wandb_offline.history(second) == [{"_step": 3, "iter_1/preference/loss": 0.7}]


def test_wandb_mode_comes_from_the_environment(tmp_path, wandb_env, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    log = StepLog(tmp_path, ["wandb"])
    _log(log, ROWS)
    log.close()
    assert not wandb_offline.offline_runs(tmp_path) and len(_jsonl(tmp_path / "metrics.jsonl")) == 3


def test_tensorboard_mirror_draws_one_eval_curve_and_hides_a_killed_stages_steps(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = StepLog(tmp_path, ["tensorboard"])
    _log(log, [*ROWS, ("iter_1/preference", 0, {"loss": 9.9}, None)])
    log.close()
    # killed in iter_1/preference: a resume cuts its line from metrics.jsonl and redoes it from global step 3
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines[:3]) + "\n")
    log = StepLog(tmp_path, tensorboard=True)  # the older spelling
    log("iter_1/preference", 0, {"loss": 0.7})
    log.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert scalars["warmup/loss"] == [(0, 2.5), (1, 2.0)]
    assert scalars["eval/accuracy"] == [(2, 0.25)]
    assert scalars["iter_1/preference/loss"] == [(3, pytest.approx(0.7))]  # 9.9, logged before the kill, is gone


def test_report_to_is_checked_when_the_config_loads():
    assert load_config(None, ["report_to=[wandb, tensorboard]"]).reporters == ["wandb", "tensorboard"]
    assert load_config(None, ["tensorboard=true"]).reporters == ["tensorboard"]  # the older spelling still reads
    assert load_config(None, ["tensorboard=true", "report_to=[tensorboard]"]).reporters == ["tensorboard"]
    assert load_config().reporters == []
    with pytest.raises(ConfigError, match=r"report_to: expected a list whose items are 'tensorboard' or 'wandb'"):
        load_config(None, ["report_to=[wandb, mlflow]"])
    assert load_config(None, ["report_to=wandb"]).reporters == ["wandb"]  # one name: the one-item list
    with pytest.raises(ConfigError, match=r"report_to: expected a list whose items are"):
        load_config(None, ["report_to=mlflow"])
    with pytest.raises(ConfigError, match="report_to: expected a list, got 3"):
        load_config(None, ["report_to=3"])
    with pytest.raises(ConfigError, match="wandb_project: expected a W&B project name"):
        load_config(None, ["wandb_project=team/project"])
    with pytest.raises(ValueError, match="report_to: unknown"):
        StepLog("unused", ["mlflow"])


def test_mirrors_may_change_on_resume():
    old = {"tensorboard": True, "iterations": 1}  # a config.yaml written before report_to existed
    new = {"tensorboard": False, "report_to": ["wandb"], "wandb_project": "p", "iterations": 1}
    assert config_changes(old, new) == []


@pytest.mark.parametrize("reporter,extra", [("wandb", "monitor"), ("tensorboard", "tensorboard")])
def test_a_missing_mirror_package_stops_the_run_before_it_starts(reporter, extra, tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == reporter else real(name, *a))
    with pytest.raises(ConfigError, match=rf"report_to: '{reporter}' needs the {reporter} package"):
        check_environment(load_config(None, [f"report_to=[{reporter}]"]))
    assert main(["run", "--set", f"out_dir={tmp_path}", "--set", f"report_to=[{reporter}]"]) == 2
    assert f"pip install 'rftfast[{extra}]'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # refused before the run directory was made
    if reporter == "tensorboard":
        with pytest.raises(ConfigError, match=r"^tensorboard: 'tensorboard' needs"):
            check_environment(load_config(None, ["tensorboard=true"]))


def test_a_run_logs_heldout_accuracy_beside_the_losses_in_every_mirror(tmp_path, wandb_env):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rftfast.pipeline import run

    cfg = load_config(None, [f"out_dir={tmp_path}", "name=mirrored", *SMALL, "iterations=0"])
    cfg.report_to = ["tensorboard", "wandb"]
    report = run(cfg)
    rows = _jsonl(cfg.run_dir / "metrics.jsonl")
    assert [r["global_step"] for r in rows] == list(range(len(rows)))
    (evaluation,) = [r for r in rows if r["stage"] == "warmup/eval"]
    assert evaluation["global_step"] == len(rows) - 1  # after the warm-up's steps, on the same count
    assert evaluation["accuracy"] == report["accuracy"]["warmup"]
    by_level = report["stages"]["warmup/eval"]["by_difficulty"]
    assert {k: v for k, v in evaluation.items() if k.startswith("accuracy/")} == {
        f"accuracy/{level}": acc for level, acc in by_level.items()
    }
    assert all("grad_norm" in r for r in rows if r["stage"] == "warmup")

    (run_file,) = wandb_offline.offline_runs(cfg.run_dir)
    history = wandb_offline.history(run_file)
    assert [h["_step"] for h in history] == [r["global_step"] for r in rows]
    assert history[-1]["eval/accuracy"] == evaluation["accuracy"]
    assert history[0]["warmup/loss"] == pytest.approx(rows[0]["loss"])
    events = EventAccumulator(str(cfg.run_dir / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("eval/accuracy")] == [
        (evaluation["global_step"], pytest.approx(evaluation["accuracy"]))
    ]
    assert len(events.Scalars("warmup/grad_norm")) == len(rows) - 1
