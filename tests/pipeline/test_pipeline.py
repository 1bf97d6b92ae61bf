"""The whole loop on a very small config: end to end, resume after a kill, the saved model reloads."""

import json

import pytest
import torch

from rftfast.config import load_config
from rftfast.mcts import load_pairs
from rftfast.pipeline import StopRequested, run
from tests.support.tiny_run import SMALL


def small(tmp_path, name, *extra):
    return load_config(None, [f"out_dir={tmp_path}", f"name={name}", *SMALL, *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    cfg = small(tmp, "full")
    return cfg, run(cfg)


def test_end_to_end_writes_report_and_checkpoints(finished):
    cfg, report = finished
    assert set(report["accuracy"]) == {"warmup", "iter_1"}
    assert report["final_model"] == str(cfg.run_dir / "iter_1" / "model")
    assert (cfg.run_dir / "iter_1" / "model" / "model.safetensors").exists()
    stages = json.loads((cfg.run_dir / "manifest.json").read_text())["stages"]
    for stage in (
        "data",
        "warmup",
        "warmup/eval",
        "iter_1/deficiency",
        "iter_1/search",
        "iter_1/preference",
        "iter_1/eval",
    ):
        assert stage in stages, stage
    assert (cfg.run_dir / "report.png").stat().st_size > 10_000
    assert (cfg.run_dir / "iter_1" / "pairs.jsonl").exists()
    # the search's pair statistics agree with its pairs file and its deficient records
    pairs = load_pairs(cfg.run_dir / "iter_1" / "pairs.jsonl")
    search, deficient = stages["iter_1/search"], stages["iter_1/deficiency"]["deficient"]
    assert search["pairs"] == len(pairs) == sum(search["depths"].values())
    assert search["records_with_pairs"] == len({p.record_id for p in pairs}) <= deficient
    assert search["pairs_per_record"] == pytest.approx(len(pairs) / deficient)
    assert search["chosen_is_truth"] == pytest.approx(sum(p.chosen_is_truth for p in pairs) / max(1, len(pairs)))
    assert report["stages"]["iter_1/search"]["pairs"] == len(pairs)
    logged = [json.loads(line) for line in (cfg.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in logged if r["stage"] == "warmup"]) == stages["warmup"]["steps"]
    assert [r["global_step"] for r in logged] == list(range(len(logged)))  # one count across the stages
    assert {"warmup", "iter_1/preference"} <= {r["stage"] for r in logged}
    evals = {r["stage"]: r for r in logged if r["stage"].endswith("/eval")}  # each evaluation logs a row
    accuracy = {f"{name}/eval": acc for name, acc in report["accuracy"].items()}
    assert {stage: r["accuracy"] for stage, r in evals.items()} == accuracy
    assert evals["iter_1/eval"]["fixed"] == stages["iter_1/eval"]["changes"]["fixed"]


def test_diagnostics_agree_with_the_files_they_describe(finished):
    cfg, report = finished
    stages = report["stages"]
    answers = {
        name: [json.loads(line) for line in (cfg.run_dir / name / "heldout.jsonl").read_text().splitlines()]
        for name in ("warmup", "iter_1")
    }
    for name, rows in answers.items():  # one judged answer per held-out record, and the accuracy is theirs
        ev = stages[f"{name}/eval"]
        assert len(rows) == ev["n"]
        assert sum(r["valid"] for r in rows) / len(rows) == pytest.approx(ev["accuracy"])
        assert sum(ev["failures"].values()) == sum(not r["valid"] for r in rows)
    before, after = ([r["valid"] for r in answers[n]] for n in ("warmup", "iter_1"))
    changes = stages["iter_1/eval"]["changes"]
    assert changes["fixed"] == sum(not b and a for b, a in zip(before, after))
    assert changes["broken"] == sum(b and not a for b, a in zip(before, after))
    assert changes["failed_before"] == before.count(False)
    assert 0 < changes["first_wrong_steps"] <= before.count(False)
    assert 0.0 <= changes["fix_rate"] <= 1.0
    # greedy-divergence pairs: made by the deficiency stage, merged into the search's pairs without repeats
    greedy = load_pairs(cfg.run_dir / "iter_1" / "greedy_pairs.jsonl")
    pairs = load_pairs(cfg.run_dir / "iter_1" / "pairs.jsonl")
    assert stages["iter_1/deficiency"]["greedy_pairs"] == len(greedy) > 0
    assert all(p.origin == "greedy" and p.chosen_is_truth for p in greedy)
    merged = [p for p in pairs if p.origin == "greedy"]
    assert 0 < len(merged) <= len(greedy)
    assert stages["iter_1/search"]["from_greedy"] == pytest.approx(len(merged) / len(pairs))
    assert len({p.tokens for p in pairs}) == len(pairs)
    assert 0.0 <= stages["iter_1/search"]["search_rejected_is_greedy"] <= 1.0
    # the held-out pairs the preference stage ranks are the warm-up's failures that have a first wrong step
    pref = stages["iter_1/preference"]
    assert pref["heldout_pairs_before"]["pairs"] == pref["heldout_pairs_after"]["pairs"] == changes["first_wrong_steps"]
    assert 0.0 <= pref["heldout_pairs_after"]["reward_accuracy"] <= 1.0


def test_saved_model_reloads_and_generates(finished):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg, _ = finished
    path = cfg.run_dir / "iter_1" / "model"
    assert (path / "model.safetensors").exists()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = tokenizer("<|user|>\nWeather in Paris?\n<|assistant|>\n", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] > ids.shape[1]


def test_resume_after_kill_matches_uninterrupted(finished, tmp_path):
    full_cfg, _ = finished
    cfg = small(tmp_path, "killed")
    with pytest.raises(StopRequested):
        run(cfg, stop_after="iter_1/search")
    assert not (cfg.run_dir / "iter_1" / "model").exists()
    with (cfg.run_dir / "metrics.jsonl").open("a") as log:  # a preference stage killed after one step
        log.write(json.dumps({"stage": "iter_1/preference", "step": 0, "loss": 9.9}) + "\n")
    run(cfg, resume=True)
    assert (cfg.run_dir / "metrics.jsonl").read_text() == (full_cfg.run_dir / "metrics.jsonl").read_text()
    assert (cfg.run_dir / "iter_1" / "pairs.jsonl").read_text() == (
        full_cfg.run_dir / "iter_1" / "pairs.jsonl"
    ).read_text()
    from safetensors.torch import load_file

    ours = load_file(cfg.run_dir / "iter_1" / "model" / "model.safetensors")
    theirs = load_file(full_cfg.run_dir / "iter_1" / "model" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert torch.equal(ours[k], theirs[k]), k


def test_a_stage_is_recorded_when_it_finishes_and_read_back_as_a_copy(tmp_path):
    cfg = small(tmp_path, "data_only")
    with pytest.raises(StopRequested):
        run(cfg, stop_after="data")
    data = json.loads((cfg.run_dir / "manifest.json").read_text())["stages"]["data"]
    assert data["train"] == 40 and set(data["skipped_too_long"]) == {"train", "heldout"}

    from rftfast.stages import Manifest, RunState

    state = RunState(cfg, Manifest(tmp_path / "manifest.json"))
    summary = state.stage("s", lambda seed: {"counts": {"a": 1}})
    summary["counts"]["a"] = 2
    assert state.stage("s", lambda seed: {})["counts"] == {"a": 1} == state.manifest.summary("s")["counts"]


def test_training_switches_run_end_to_end(tmp_path):
    pytest.importorskip("peft")
    cfg = small(
        tmp_path,
        "switches",
        "train.lora_r=4",
        "train.gradient_accumulation=2",
        "train.gradient_checkpointing=true",
        "tensorboard=true",
    )
    report = run(cfg)
    assert set(report["accuracy"]) == {"warmup", "iter_1"}
    assert report["final_model"] == str(cfg.run_dir / "iter_1" / "model")
    assert (cfg.run_dir / "iter_1" / "model" / "model.safetensors").exists()
    assert list((cfg.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(cfg.run_dir / "iter_1" / "model")  # merged: a plain checkpoint


def test_pair_history_trains_each_iteration_on_the_earlier_pairs_too(finished, tmp_path):
    import shutil

    from rftfast.stages.iteration import merge_pairs

    full_cfg, _ = finished
    shutil.copytree(full_cfg.run_dir, tmp_path / "more")
    cfg = small(tmp_path, "more", "iterations=2", "preference.pair_history=1")
    report = run(cfg, resume=True, allow_config_change=True)  # iter_1 is read back; iter_2 runs
    first, second = (load_pairs(cfg.run_dir / f"iter_{k}" / "pairs.jsonl") for k in (1, 2))
    trained = merge_pairs(second, first)
    assert len({p.tokens for p in trained}) == len(trained)
    assert len(trained) > len(second)  # iter_1 found pairs iter_2 did not
    assert report["stages"]["iter_2/preference"]["pairs"] == len(trained)
    assert (
        report["stages"]["iter_1/preference"]
        == json.loads((full_cfg.run_dir / "report.json").read_text())["stages"]["iter_1/preference"]
    )


def test_policy_mistakes_only_drops_the_search_pairs_the_greedy_policy_would_not_write(tmp_path):
    cfg = small(tmp_path, "mistakes", "search.policy_mistakes_only=true")
    report = run(cfg)
    search = report["stages"]["iter_1/search"]
    kept = [p for p in load_pairs(cfg.run_dir / "iter_1" / "pairs.jsonl") if p.origin == "search"]
    searched = len(kept) + search["dropped_not_greedy"]
    assert search["dropped_not_greedy"] > 0  # the tiny search samples mistakes the greedy policy does not make
    assert len(kept) == round(search["search_rejected_is_greedy"] * searched)
    assert search["pairs"] == len(load_pairs(cfg.run_dir / "iter_1" / "pairs.jsonl"))
