"""The GPU suite's plumbing on CPU: `benchmarks/gpu/run.sh --dry-run`, the part runner's time limits and budget,
and the benchmark's DPO formula against FusedDPOLoss at tiny shapes (the GPU figures themselves need a GPU)."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rftfast import FusedDPOLoss

ROOT = Path(__file__).resolve().parents[1]
GPU = ROOT / "benchmarks" / "gpu"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"rftfast_gpu_{name}", GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


suite = _load("suite")
bench = suite.bench_loss
SKIP_REASON = "dry run" if torch.cuda.is_available() else "no CUDA"


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


# ----------------------------------------------------------------------------- the dry run


def test_dry_run_skips_every_cuda_part_and_writes_a_summary(tmp_path):
    out = tmp_path / "gpu-out"
    env = dict(os.environ, OUT=str(out), PYTHON=sys.executable)
    start = time.monotonic()
    proc = subprocess.run(
        ["bash", str(GPU / "run.sh"), "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert elapsed < 60, f"the dry run took {elapsed:.0f} s"
    summary = _summary(out)
    assert summary["mode"] == "dry-run" and summary["status"] == "ok"
    assert list(summary["parts"]) == suite.PART_NAMES
    for part in suite.PARTS:
        entry = summary["parts"][part.name]
        assert entry["plan"], part.name
        if part.needs_cuda:
            assert (entry["status"], entry["reason"]) == ("skipped", SKIP_REASON), (part.name, entry)
        else:
            assert entry["status"] == "ok", (part.name, entry)
    env_figures = summary["parts"]["env"]["figures"]
    assert env_figures["torch"] == torch.__version__ and env_figures["cuda"] == torch.cuda.is_available()
    files = sorted(p.name for p in out.iterdir())
    assert all((out / f).is_file() for f in files), "flat: no folders under $OUT"
    assert len(files) <= 8 and {"summary.json", "log.txt", "env.json"} <= set(files), files
    assert set(summary["files"]) == set(files)
    log = (out / "log.txt").read_text()
    assert "| bench | skipped |" in log and log.rstrip().endswith(proc.stdout.rstrip().splitlines()[-1])
    assert not (tmp_path / "gpu-out" / "bench.json").exists()  # nothing was measured


def test_selection_and_budget_are_honoured(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(GPU / "suite.py"),
            "--out",
            str(tmp_path),
            "--dry-run",
            "--only",
            "env,tests",
            "--budget",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    parts = _summary(tmp_path)["parts"]
    assert parts["env"] == {**parts["env"], "status": "skipped", "reason": "no time left in the 10 s budget"}
    assert parts["tests"]["reason"] == SKIP_REASON
    for name in ("install", "build", "bench", "pipeline"):
        assert parts[name]["reason"] == "not selected (--only)"


def test_bad_arguments_are_refused(tmp_path):
    for args in (["--only", "nope"], ["--budget", "abc"]):
        proc = subprocess.run(
            ["bash", str(GPU / "run.sh"), "--out", str(tmp_path / "o"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=dict(os.environ, PYTHON=sys.executable),
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)


# ----------------------------------------------------------------------------- time limits


def test_run_cmd_ends_the_whole_process_group_at_its_limit(tmp_path):
    pid_file = tmp_path / "pid"
    start = time.monotonic()
    rc, secs, _ = suite.run_cmd(["bash", "-c", f"sleep 60 & echo $! > {pid_file}; wait"], limit=1.0)
    assert rc is None and secs < 10 and time.monotonic() - start < 15
    child = int(pid_file.read_text())
    for _ in range(50):  # the background sleep went with its group (gone, or a zombie awaiting its reaper)
        try:
            state = Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"process {child} outlived its group's time limit")


def test_a_part_over_its_limit_is_recorded_and_the_next_still_runs(tmp_path):
    runner = suite.Runner(str(tmp_path), budget=60, dry_run=True, only=[], skip=[])
    env_part = next(p for p in suite.PARTS if p.name == "env")
    try:
        late = {"status": "pending", "reason": None, "figures": {}}
        runner.run_one(env_part, late, limit=0.5)  # the version probe alone takes longer
        assert late["status"] == "failed" and late["reason"].startswith("timeout after"), late
        assert late["wall_s"] < 10
        again = {"status": "pending", "reason": None, "figures": {}}
        runner.run_one(env_part, again, limit=60)
        assert again["status"] == "ok" and again["figures"]["torch"] == torch.__version__, again
    finally:
        import shutil

        shutil.rmtree(runner.work, ignore_errors=True)


# ----------------------------------------------------------------------------- what the GPU run would do


def test_fetch_script_pins_what_the_suite_installs():
    text = (GPU / "fetch-wheels.sh").read_text()
    pins = re.findall(r"^\s+([a-z0-9-]+)==([0-9.]+)$", text, flags=re.M)
    names = {n for n, _ in pins}
    assert {"liger-kernel", "cut-cross-entropy", "trl", "datasets", "dill", "multiprocess"} <= names, pins
    assert "--no-deps" in text and "--python-version 3.12" in text and "manylinux_2_28_x86_64" in text
    cmd = suite.install_cmd(["a.whl"])
    assert cmd[cmd.index("--target") + 1] == "/tmp/site"
    assert {"--no-index", "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade"} <= set(cmd)


def test_pipeline_overrides_load_as_a_cuda_bf16_run(tmp_path):
    from rftfast.config import load_config
    from tests.support.tiny_run import SMALL

    cfg = load_config(None, [f"out_dir={tmp_path}", *suite.PIPELINE_SET])
    assert (cfg.device, cfg.train.precision, cfg.iterations) == ("cuda", "bf16", 1)
    assert 200 <= cfg.data.num_train <= 1000
    given = dict(kv.split("=", 1) for kv in suite.PIPELINE_SET)
    for kv in SMALL:  # the tiny model and search of the pipeline tests, only more records
        key, value = kv.split("=", 1)
        assert key in ("data.num_train", "data.num_heldout") or given.get(key) == value, kv


def test_bench_plan_covers_every_variant_at_both_sizes():
    plan = bench.plan()
    assert (plan["hidden"], plan["vocab"], plan["dtype"]) == (4096, 128256, "bf16")
    assert sorted(plan["tokens"]) == [4096, 16384]
    assert {"naive", "liger", "cce", "trl", "rftfast-fused", "rftfast-recompute"} <= set(plan["variants"])
    assert len(plan["jobs"]) == len(plan["variants"]) * 2
    rows = [
        {
            "variant": "floor",
            "tokens": 8,
            "status": "ok",
            "median_s": 0.5,
            "peak_above_inputs_mib": 1.0,
            "working_mib": 0.5,
        },
        {"variant": "naive", "tokens": 8, "status": "oom", "reason": "CUDA out of memory"},
    ]
    table = bench.table(rows)
    assert "| 8 | floor | ok | 500.0 | 1.00 |" in table and "oom: CUDA out of memory" in table


# ----------------------------------------------------------------------------- the baselines' DPO formula


def _tiny(seed=0):
    return bench.make_inputs(
        torch, tokens=4 * 12, hidden_size=16, vocab=53, seq_len=12, dtype=torch.float32, device="cpu", seed=seed
    )


def _grads_and_loss(step, hidden, weight):
    hidden.grad = weight.grad = None
    loss = step()
    return float(loss.detach()), hidden.grad.clone(), weight.grad.clone()


def _fused_reference(inputs):
    hidden, ref_hidden, weight, labels = inputs
    out = FusedDPOLoss("sigmoid", beta=bench.BETA, backend="torch")(hidden, weight, labels, ref_hidden=ref_hidden)
    out.loss.backward()
    result = float(out.loss.detach()), hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    return result


def _cce_eager():
    """cut-cross-entropy's own torch path, run eagerly (its CCE kernels need CUDA; torch.compile is slow here)."""
    pytest.importorskip("cut_cross_entropy")
    import cut_cross_entropy.torch_compile as tc

    fn = tc.torch_compile_linear_cross_entropy_apply
    return tc, getattr(fn, "_torchdynamo_orig_callable", getattr(fn, "__wrapped__", fn))


@pytest.mark.parametrize("variant", ["naive", "rftfast-fused", "rftfast-recompute", "liger", "trl", "cce"])
def test_bench_variants_compute_the_fused_dpo_loss(variant, monkeypatch):
    inputs = _tiny()
    want_loss, want_gh, want_gw = _fused_reference(inputs)
    engine_kw = {}
    if variant == "trl":
        pytest.importorskip("trl.kernels")
    if variant == "liger":
        pytest.importorskip("liger_kernel.chunked_loss")
        engine_kw = {"compiled": False}  # torch.compile on these CPUs would dominate; the GPU run compiles
    if variant == "cce":
        tc, eager = _cce_eager()
        monkeypatch.setattr(tc, "torch_compile_linear_cross_entropy_apply", eager)
        engine_kw = {"impl": "torch_compile"}
    hidden, _, weight, _ = inputs
    loss, gh, gw = _grads_and_loss(bench.make_step(variant, *inputs, **engine_kw), hidden, weight)
    assert loss == pytest.approx(want_loss, rel=1e-5, abs=1e-6)
    torch.testing.assert_close(gh, want_gh, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gw, want_gw, rtol=1e-4, atol=1e-6)


def test_floor_step_hands_back_grads_of_the_right_shapes():
    hidden, ref_hidden, weight, labels = _tiny(1)
    bench.make_step("floor", hidden, ref_hidden, weight, labels)()
    assert hidden.grad.shape == hidden.shape and weight.grad.shape == weight.shape
