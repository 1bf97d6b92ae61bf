"""Two processes on gloo (`torchrun --nproc_per_node=2`) give what one process gives."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rftfast import distributed
from tests.support.same_update import assert_same_update

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "train" / "dist_worker.py"


def torchrun(*args: str, nproc: int = 2, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "--standalone", *args]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    subprocess.run(
        [sys.executable, str(WORKER), str(out), "ddp"],
        check=True,
        cwd=ROOT,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return torch.load(out / "result.pt")


@pytest.mark.parametrize("parallel", ["ddp", "fsdp2"])
def test_two_processes_match_one(single, tmp_path, parallel):
    torchrun(str(WORKER), str(tmp_path), parallel)
    two = torch.load(tmp_path / "result.pt")
    assert two["world"] == 2 and single["world"] == 1
    assert two["sft_losses"] == pytest.approx(single["sft_losses"], rel=1e-5)
    assert two["pref_losses"] == pytest.approx(single["pref_losses"], rel=1e-5)
    for run in ("sft", "pref"):
        assert_same_update(single["initial"], single[run], two[run], what=f"{parallel} {run}")


def test_shard_and_gather_are_inverse_in_one_process():
    assert distributed.shard([1, 2, 3]) == [1, 2, 3] and distributed.gather([4, 5]) == [4, 5]
    assert distributed.all_sum([1.5]) == [1.5] and distributed.is_main()


def test_pipeline_under_torchrun_completes_and_resumes(tmp_path):
    script = str(ROOT / "tests" / "train" / "dist_pipeline.py")
    torchrun(script, str(tmp_path), "dist", "stop-after", "iter_1/search")
    stages = json.loads((tmp_path / "dist" / "manifest.json").read_text())["stages"]
    assert "iter_1/search" in stages and "iter_1/preference" not in stages
    torchrun(script, str(tmp_path), "dist", "resume")
    report = json.loads((tmp_path / "dist" / "report.json").read_text())
    assert set(report["accuracy"]) == {"warmup", "iter_1"}
    kept = 12 - report["stages"]["data"]["skipped_too_long"]["heldout"]
    assert report["stages"]["warmup/eval"]["n"] == kept  # every held-out record judged once, across both ranks
    assert (tmp_path / "dist" / "iter_1" / "model" / "model.safetensors").exists()
    assert (tmp_path / "dist" / "report.png").exists()


def test_vocab_parallel_logprobs_match_float64_reference(tmp_path):
    from tests.train.dist_vocab_parallel import inputs

    torchrun(str(ROOT / "tests" / "train" / "dist_vocab_parallel.py"), str(tmp_path))
    hidden, weight, labels, upstream = inputs()
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    keep = labels != -100
    ref = torch.where(keep, torch.log_softmax(h @ w.T, -1).gather(1, labels.clamp(min=0)[:, None])[:, 0], 0.0)
    (ref * upstream).sum().backward()
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt")
        rows = got["rows"]
        torch.testing.assert_close(got["logp"], ref.detach(), rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got["grad_hidden"], h.grad, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(got["grad_weight"], w.grad[r * rows : (r + 1) * rows], rtol=1e-10, atol=1e-10)


def test_vocab_parallel_logprobs_in_one_process_is_plain_log_softmax():
    from rftfast.ops.vocab_parallel import vocab_parallel_logprobs
    from tests.train.dist_vocab_parallel import inputs

    hidden, weight, labels, _ = inputs(seed=1)
    got = vocab_parallel_logprobs(hidden, weight, labels)
    ref = torch.log_softmax(hidden @ weight.T, -1).gather(1, labels.clamp(min=0)[:, None])[:, 0]
    torch.testing.assert_close(got, torch.where(labels != -100, ref, 0.0))
    with pytest.raises(ValueError, match="labels"):
        vocab_parallel_logprobs(hidden, weight, labels[:-1])
