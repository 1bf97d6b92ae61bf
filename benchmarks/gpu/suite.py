"""The GPU suite's part runner (stdlib only; `run.sh` calls it, with the full log teed to $OUT/log.txt).

Parts, in order, each in its own process under its own time limit, all within one budget (470 s;
run.sh's outer `timeout` stops everything at 8 minutes):
    install   wheels carried in .whl/ -> /tmp/site (the device README's install line), then on PYTHONPATH
    build     pip install --no-build-isolation --no-deps -e .  (the C++ extension too), then an import check
    env       versions (python, torch, triton, transformers, rftfast, the baselines), GPU name, capability
    tests     python -m pytest -m gpu tests/ops/test_gpu.py
    bench     benchmarks/gpu/bench_loss.py: one DPO step, rftfast against naive torch, Liger, CCE and TRL
    pipeline  a short `rftfast run` on device=cuda (tiny model, 300 records, bf16, 1 iteration)

A part that fails or runs out of time does not stop the next. Without CUDA (or with --dry-run) every
part but `env` is recorded as skipped, nothing is installed or built, and the run takes seconds.
Written under --out (flat, at most 8 files): summary.json (every part's status, reason, seconds and
figures, rewritten after each part), env.json, tests.json, bench.json, pipeline.json; run.sh adds log.txt.

    python benchmarks/gpu/suite.py --out gpu-out [--dry-run] [--only tests,bench] [--budget 470]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _load(name: str):
    """A helper beside this file, under a name of its own (no top-level `report` module to collide with)."""
    spec = importlib.util.spec_from_file_location(f"rftfast_gpu_{name}", os.path.join(HERE, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _load_tiny_run() -> list[str]:
    spec = importlib.util.spec_from_file_location(
        "rftfast_tiny_run", os.path.join(ROOT, "tests", "support", "tiny_run.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.SMALL)


bench_loss = _load("bench_loss")  # both stdlib-only at import
report = _load("report")

SITE = "/tmp/site"  # where the carried wheels go (the device README's line)
WHEELS = ".whl"
BUDGET_S = 470.0  # the whole suite (run.sh's outer `timeout` stops it at 8 minutes whatever happens)
RESERVE_S = 5.0  # kept back at the end for the summary
MIN_PART_S = 20.0  # a part with less time than this left is skipped
SLACK_S = 10.0  # a part's own inner limits end this much before the runner's hard kill
MAX_FILES = 8  # what comes back from $OUT
NO_CUDA = "no CUDA"

# `rftfast run` overrides: the pipeline tests' tiny run (tests/support/tiny_run.py) with a few hundred records,
# on CUDA in bf16 (later --set values win).
PIPELINE_SET = [
    *_load_tiny_run(),
    "data.num_train=300",
    "data.num_heldout=40",
    "device=cuda",
    "train.precision=bf16",
    "name=gpu-smoke",
]


class Skip(Exception):
    """Raised by a part that has nothing to do here; its message is the reason."""


class Failed(Exception):
    """Raised by a part that ran and failed; its message is the reason (figures may still be set)."""


@dataclass
class Ctx:
    out: str  # the suite's --out folder
    work: str  # a private scratch folder (progress files, run dirs); removed at the end
    limit: float  # this part's time limit in seconds (the runner kills it at this)
    figures: dict  # what the part measured (compact: goes into summary.json)
    details: dict | None = None  # the full record, written to <out>/<part>.json when set

    @property
    def inner_limit(self) -> float:
        return max(1.0, self.limit - SLACK_S)


@dataclass
class Part:
    name: str
    limit_s: float
    needs_cuda: bool
    run: object  # callable(Ctx) -> None; fills ctx.figures, raises Skip / Failed
    plan: object  # callable() -> dict: what it would do (shown in a dry run too)


# ----------------------------------------------------------------------------- helpers

ACTIVE: set[subprocess.Popen] = set()  # children started by run_cmd, each in its own process group


def _on_term(signum, _frame) -> None:
    """A part's process told to stop (its time is up): end its children's groups first, then itself."""
    for proc in list(ACTIVE) + list(bench_loss.ACTIVE):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    os._exit(128 + signum)


def run_cmd(
    cmd: list[str], limit: float, env: dict | None = None, cwd: str = ROOT, capture: bool = False
) -> tuple[int | None, float, str]:
    """Run `cmd` in its own process group, its output into the log (or captured); kill the group at `limit`.
    Returns (exit code or None on timeout, seconds, captured stdout)."""
    print("$ " + " ".join(a if len(a) <= 100 else a.strip().split("\n")[0][:60] + " ..." for a in cmd), flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, start_new_session=True, text=True, stdout=subprocess.PIPE if capture else None
    )
    ACTIVE.add(proc)
    try:
        out, _ = proc.communicate(timeout=limit)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        bench_loss.kill_group(proc)
        out, _ = proc.communicate()
        rc = None
    finally:
        ACTIVE.discard(proc)
    return rc, time.monotonic() - start, out or ""


def _write_json(path: str, data) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=str)
    os.replace(tmp, path)


def _read_jsonl(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    rows = []
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line torn by a kill
                continue
    return rows


def _py() -> str:
    return sys.executable


def _wheels() -> list[str]:
    return sorted(glob.glob(os.path.join(ROOT, WHEELS, "*.whl")))


# ----------------------------------------------------------------------------- the parts


def install_cmd(wheels: list[str]) -> list[str]:
    return [
        _py(),
        "-m",
        "pip",
        "install",
        "-q",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--no-cache-dir",
        "--upgrade",
        "--target",
        SITE,
        *wheels,
    ]


def plan_install() -> dict:
    wheels = [os.path.relpath(w, ROOT) for w in _wheels()]
    return {
        "wheels": wheels,
        "command": " ".join(install_cmd(wheels or [f"{WHEELS}/*.whl"])),
        "then": f"PYTHONPATH={SITE}",
    }


def part_install(ctx: Ctx) -> None:
    wheels = _wheels()
    if not wheels:
        raise Skip(
            f"no wheels in {WHEELS}/ (fetch them with benchmarks/gpu/fetch-wheels.sh on a machine "
            "with a package registry, and carry the folder)"
        )
    ctx.figures["wheels"] = [os.path.basename(w) for w in wheels]
    rc, secs, _ = run_cmd(install_cmd(wheels), ctx.inner_limit)
    ctx.figures["seconds"] = round(secs, 1)
    if rc != 0:
        raise Failed("timeout" if rc is None else f"pip exit code {rc}")


BUILD_CMD = ["-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-index", "-e", "."]
IMPORT_CHECK = (
    "import json, rftfast, rftfast._C, rftfast.kernels.linear_logprobs as k; "
    "print(json.dumps({'rftfast': rftfast.__version__, 'package': rftfast.__file__, "
    "'extension': rftfast._C.__file__, 'kernels': k.__file__}))"
)


def plan_build() -> dict:
    return {"command": " ".join(["python3", *BUILD_CMD]), "check": "import rftfast._C, rftfast.kernels (from /tmp)"}


def part_build(ctx: Ctx) -> None:
    from importlib import metadata

    for dist in ("scikit-build-core", "nanobind", "cmake", "ninja"):
        try:
            ctx.figures[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            ctx.figures[dist] = None
    rc, secs, _ = run_cmd([_py(), *BUILD_CMD], ctx.inner_limit * 0.85)
    ctx.figures["seconds"] = round(secs, 1)
    if rc != 0:
        raise Failed("build timed out" if rc is None else f"pip install -e . exit code {rc}")
    # From another folder, so that the installed package (editable hook, extension) is what imports.
    rc, _, out = run_cmd(
        [_py(), "-c", IMPORT_CHECK], max(5.0, ctx.inner_limit - secs), cwd=tempfile.gettempdir(), capture=True
    )
    if rc != 0:
        raise Failed("built, but `import rftfast._C, rftfast.kernels` failed (see the log)")
    ctx.figures.update(json.loads(out.strip().splitlines()[-1]))


ENV_SCRIPT = r"""
import json, platform, sys
from importlib import metadata
info = {"python": platform.python_version(), "executable": sys.executable, "platform": platform.platform()}
for dist in ("torch", "triton", "transformers", "rftfast", "trl", "liger-kernel", "cut-cross-entropy", "datasets",
             "pyarrow", "fsspec", "huggingface-hub", "accelerate", "tokenizers", "numba", "peft", "numpy",
             "scikit-build-core", "nanobind"):
    try:
        info[dist] = metadata.version(dist)
    except metadata.PackageNotFoundError:
        info[dist] = None
import torch
info["torch_cuda"] = torch.version.cuda
info["cuda"] = torch.cuda.is_available()
if info["cuda"]:
    p = torch.cuda.get_device_properties(0)
    info.update(gpu=p.name, capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                gpu_memory_gib=round(p.total_memory / 2**30, 1), multiprocessors=p.multi_processor_count,
                device_count=torch.cuda.device_count())
for mod in ("rftfast", "rftfast._C"):
    try:
        __import__(mod)
        info[mod + " imports"] = True
    except Exception as e:
        info[mod + " imports"] = f"{type(e).__name__}: {e}"
print("ENV " + json.dumps(info))
"""


def plan_env() -> dict:
    return {
        "reports": "versions of python, torch, triton, transformers, rftfast and the baselines; GPU name, "
        "capability, memory; nvidia-smi's driver"
    }


def part_env(ctx: Ctx) -> None:
    rc, _, out = run_cmd([_py(), "-c", ENV_SCRIPT], ctx.inner_limit, capture=True)
    lines = [line[4:] for line in out.splitlines() if line.startswith("ENV ")]
    if rc != 0 or not lines:
        raise Failed("timeout" if rc is None else f"the version probe failed (exit code {rc})")
    ctx.figures.update(json.loads(lines[-1]))
    if shutil.which("nvidia-smi"):
        rc, _, out = run_cmd(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw",
                "--format=csv,noheader",
            ],
            min(20.0, ctx.inner_limit),
            capture=True,
        )
        if rc == 0:
            ctx.figures["nvidia_smi"] = out.strip()
    for key, value in ctx.figures.items():
        print(f"  {key}: {value}")
    ctx.details = dict(ctx.figures)


TESTS_CMD = [
    "-m",
    "pytest",
    "-m",
    "gpu",
    "tests/ops/test_gpu.py",
    "-q",
    "-rA",
    "-p",
    "pytest_progress",
    "-p",
    "no:cacheprovider",
    "--durations=15",
]


def plan_tests() -> dict:
    return {"command": " ".join(["python3", *TESTS_CMD])}


def part_tests(ctx: Ctx) -> None:
    progress, errors = os.path.join(ctx.work, "progress.jsonl"), os.path.join(ctx.work, "errors.jsonl")
    env = dict(
        os.environ,
        GPU_SUITE_PROGRESS=progress,
        RFTFAST_GPU_REPORT=errors,
        PYTHONPATH=os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p),
    )
    rc, secs, _ = run_cmd([_py(), *TESTS_CMD], ctx.inner_limit, env=env)
    results = _read_jsonl(progress)
    counts = {k: sum(r["outcome"] == k and r["when"] == "call" for r in results) for k in ("passed", "failed")}
    counts["skipped"] = sum(r["outcome"] == "skipped" for r in results)
    counts["errors"] = sum(r["outcome"] == "failed" and r["when"] != "call" for r in results)
    ctx.figures.update(
        counts, seconds=round(secs, 1), exit_code=rc, failures=[r["test"] for r in results if r["outcome"] == "failed"]
    )
    ctx.details = {**ctx.figures, "tests": results, "measured_errors": _read_jsonl(errors)}
    if rc is None:
        raise Failed(f"timeout after {ctx.inner_limit:.0f} s; {len(results)} tests finished")
    if rc != 0:
        bad = counts["failed"] + counts["errors"]
        raise Failed(f"{bad} test(s) failed" if bad else f"pytest exit code {rc}")
    if not counts["passed"]:
        raise Failed(f"no GPU test ran ({counts['skipped']} skipped)")


def plan_bench() -> dict:
    return bench_loss.plan()


def part_bench(ctx: Ctx) -> None:
    path = os.path.join(ctx.work, "bench.json")
    args = bench_loss.build_parser().parse_args(["--budget", str(ctx.inner_limit), "--out", path])
    try:
        result = bench_loss.run_bench(args)
    finally:  # partial rows too
        if os.path.exists(path):
            with open(path) as f:
                ctx.details = json.load(f)
    rows = result["rows"]
    ctx.figures["table"] = bench_loss.table(rows)
    ctx.figures["rows"] = [
        {
            k: r.get(k)
            for k in (
                "variant",
                "tokens",
                "status",
                "reason",
                "median_s",
                "peak_above_inputs_mib",
                "working_mib",
                "loss",
                "loss_rel_diff_vs_naive",
            )
            if r.get(k) is not None
        }
        for r in rows
    ]
    print(ctx.figures["table"])
    ours = [r for r in rows if r["variant"].startswith("rftfast") and r["status"] not in ("ok", "skipped")]
    if ours:
        raise Failed("; ".join(f"{r['variant']} at N={r['tokens']}: {r['status']}" for r in ours))


def pipeline_cmd(out_dir: str) -> list[str]:
    sets = [f"out_dir={out_dir}", *PIPELINE_SET]
    return [_py(), "-m", "rftfast.cli", "run", *[x for kv in sets for x in ("--set", kv)]]


def plan_pipeline() -> dict:
    return {"command": " ".join(pipeline_cmd("/tmp/rftfast-gpu-run-XXXX")).replace(_py(), "python3")}


def part_pipeline(ctx: Ctx) -> None:
    # A fresh folder (`rftfast run` refuses an existing run), in the scratch folder the runner removes.
    out_dir = tempfile.mkdtemp(prefix="rftfast-gpu-run-", dir=ctx.work)
    rc, secs, _ = run_cmd(pipeline_cmd(out_dir), ctx.inner_limit)
    run_dir = os.path.join(out_dir, "gpu-smoke")
    ctx.figures.update(seconds=round(secs, 1), exit_code=rc, command=" ".join(pipeline_cmd(out_dir)[1:]))
    for name in ("report.json", "manifest.json"):
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            with open(path) as f:
                data = json.load(f)
            stages = data.get("stages", {})
            ctx.figures["stages"] = {
                s: {k: v for k, v in info.items() if not isinstance(v, (list, dict))} for s, info in stages.items()
            }
            if "accuracy" in data:
                ctx.figures["accuracy"] = data["accuracy"]
            break
    ctx.figures["metrics_lines"] = len(_read_jsonl(os.path.join(run_dir, "metrics.jsonl")))
    ctx.details = dict(ctx.figures)
    if rc != 0:
        raise Failed(f"timeout after {ctx.inner_limit:.0f} s" if rc is None else f"rftfast run exit code {rc}")


PARTS = [
    Part("install", 60, True, part_install, plan_install),
    Part("build", 180, True, part_build, plan_build),
    Part("env", 60, False, part_env, plan_env),
    Part("tests", 180, True, part_tests, plan_tests),
    Part("bench", 200, True, part_bench, plan_bench),
    Part("pipeline", 120, True, part_pipeline, plan_pipeline),
]
PART_NAMES = [p.name for p in PARTS]


# ----------------------------------------------------------------------------- one part (child process)


def run_part(name: str, out: str, work: str, limit: float) -> int:
    """Run one part here and write <work>/<name>.json: {status, reason, figures, details}."""
    part = next(p for p in PARTS if p.name == name)
    signal.signal(signal.SIGTERM, _on_term)
    ctx = Ctx(out=out, work=work, limit=limit, figures={})
    status, reason = "ok", None
    try:
        part.run(ctx)
    except Skip as e:
        status, reason = "skipped", str(e)
    except Failed as e:
        status, reason = "failed", str(e)
    except Exception as e:  # noqa: BLE001 - a part's bug is that part's failure, not the suite's
        import traceback

        traceback.print_exc()
        status, reason = "failed", f"{type(e).__name__}: {e}"[:300]
    _write_json(
        os.path.join(work, f"{name}.json"),
        {"status": status, "reason": reason, "figures": ctx.figures, "details": ctx.details},
    )
    return 1 if status == "failed" else 0


# ----------------------------------------------------------------------------- the runner


def probe_cuda(limit: float = 90.0) -> tuple[bool, str]:
    """(torch sees a CUDA device, a note), from a child process: the runner itself never imports torch."""
    code = "import torch; print('CUDA', torch.cuda.is_available())"
    try:
        proc = subprocess.run([_py(), "-c", code], capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return False, f"the CUDA probe took over {limit:.0f} s"
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return False, f"torch did not import: {tail[:200]}"
    return "CUDA True" in proc.stdout, "torch.cuda.is_available()"


class Runner:
    def __init__(self, out: str, budget: float, dry_run: bool, only: list[str], skip: list[str]):
        self.out, self.budget, self.dry_run, self.only, self.skip = out, budget, dry_run, only, skip
        self.start = time.monotonic()
        self.deadline = self.start + budget
        self.work = tempfile.mkdtemp(prefix="rftfast-gpu-suite-")
        self.summary: dict = {}

    def left(self) -> float:
        return self.deadline - time.monotonic() - RESERVE_S

    def write_summary(self) -> None:
        self.summary["wall_s"] = round(time.monotonic() - self.start, 1)
        self.summary["files"] = sorted(set(os.listdir(self.out)) | {"summary.json"})
        _write_json(os.path.join(self.out, "summary.json"), self.summary)

    def skip_reason(self, part: Part, cuda: bool) -> str | None:
        if self.only and part.name not in self.only:
            return "not selected (--only)"
        if part.name in self.skip:
            return "not selected (--skip)"
        if part.needs_cuda and not cuda:
            return NO_CUDA
        if part.needs_cuda and self.dry_run:
            return "dry run"
        return None

    def interrupted(self, signum, _frame) -> None:
        """Told to stop (run.sh's outer timeout, Ctrl-C): end the running part, keep what is known."""
        for proc in list(ACTIVE):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        self.summary["status"] = f"interrupted by signal {signum}"
        if self.summary.get("parts"):
            self.write_summary()
        print(f"\nGPU suite interrupted by signal {signum}; summary.json holds the parts so far", flush=True)
        os._exit(128 + signum)

    def run(self) -> int:
        os.makedirs(self.out, exist_ok=True)
        signal.signal(signal.SIGTERM, self.interrupted)
        signal.signal(signal.SIGINT, self.interrupted)
        cuda, note = probe_cuda(min(90.0, max(1.0, self.left())))
        mode = "gpu" if cuda and not self.dry_run else "dry-run"
        self.summary = {
            "suite": "rftfast GPU suite",
            "mode": mode,
            "status": "running",
            "cuda": cuda,
            "cuda_probe": note,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "budget_s": self.budget,
            "out": os.path.abspath(self.out),
            "root": ROOT,
            "parts": {},
        }
        print(f"GPU suite: mode {mode} (CUDA: {cuda}, {note}); budget {self.budget:.0f} s; out {self.out}", flush=True)
        self.write_summary()
        for part in PARTS:
            entry = self.summary["parts"][part.name] = {
                "status": "pending",
                "reason": None,
                "limit_s": None,
                "wall_s": 0.0,
                "figures": {},
            }
            try:
                entry["plan"] = part.plan()
            except Exception as e:  # noqa: BLE001 - a plan is information only
                entry["plan"] = f"{type(e).__name__}: {e}"
            reason = self.skip_reason(part, cuda)
            limit = min(part.limit_s, self.left())
            if reason is None and limit < MIN_PART_S:
                reason = f"no time left in the {self.budget:.0f} s budget"
            if reason is not None:
                entry.update(status="skipped", reason=reason)
                print(f"=== {part.name}: skipped ({reason})", flush=True)
            else:
                self.run_one(part, entry, limit)
            self.write_summary()
        failed = [n for n, p in self.summary["parts"].items() if p["status"] == "failed"]
        self.summary["status"] = f"failed: {', '.join(failed)}" if failed else "ok"
        self.write_summary()
        shutil.rmtree(self.work, ignore_errors=True)
        files = self.summary["files"]
        if len(files) > MAX_FILES:
            print(f"warning: {len(files)} files in {self.out}, more than the {MAX_FILES} that come back", flush=True)
        print("\n" + report.render(self.summary), flush=True)
        return 1 if failed else 0

    def run_one(self, part: Part, entry: dict, limit: float) -> None:
        entry["limit_s"] = round(limit, 1)
        print(f"\n=== {part.name} (limit {limit:.0f} s)", flush=True)
        cmd = [
            _py(),
            os.path.abspath(__file__),
            "--part",
            part.name,
            "--out",
            self.out,
            "--work",
            self.work,
            "--limit",
            str(limit),
        ]
        rc, secs, _ = run_cmd(cmd, limit)
        entry["wall_s"] = round(secs, 1)
        result_path = os.path.join(self.work, f"{part.name}.json")
        result = {}
        if os.path.exists(result_path):
            with open(result_path) as f:
                result = json.load(f)
        entry["figures"] = result.get("figures") or {}
        if rc is None:
            entry.update(status="failed", reason=f"timeout after {limit:.0f} s")
        elif result:
            entry.update(status=result["status"], reason=result.get("reason"))
        else:
            entry.update(status="failed", reason=f"exit code {rc}, no result written")
        if result.get("details") is not None:
            _write_json(os.path.join(self.out, f"{part.name}.json"), result["details"])
            entry["file"] = f"{part.name}.json"
        if part.name == "install" and entry["status"] == "ok":  # every later part sees the carried packages
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SITE, os.environ.get("PYTHONPATH")) if p)
        print(
            f"=== {part.name}: {entry['status']}"
            + (f" ({entry['reason']})" if entry["reason"] else "")
            + f" in {secs:.0f} s",
            flush=True,
        )


def _names(text: str | None) -> list[str]:
    names = [n.strip() for n in (text or "").split(",") if n.strip()]
    unknown = sorted(set(names) - set(PART_NAMES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown part(s) {unknown}; expected some of {PART_NAMES}")
    return names


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="benchmarks/gpu/run.sh", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out", default=os.environ.get("OUT") or "gpu-out", help="output folder (default: $OUT, else ./gpu-out)"
    )
    ap.add_argument("--dry-run", action="store_true", help="exercise the plumbing only: every CUDA part skipped")
    ap.add_argument(
        "--budget", type=float, default=BUDGET_S, help=f"seconds for the whole suite (default {BUDGET_S:.0f})"
    )
    ap.add_argument("--only", type=_names, default=[], help=f"comma-separated parts to run, of {PART_NAMES}")
    ap.add_argument("--skip", type=_names, default=[], help="comma-separated parts not to run")
    ap.add_argument("--list", action="store_true", help="print the parts and their plans, run nothing")
    ap.add_argument("--part", choices=PART_NAMES, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=float, help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.part:
        return run_part(args.part, args.out, args.work, args.limit)
    if args.list:
        for p in PARTS:
            print(f"{p.name:9} limit {p.limit_s:4.0f} s  {'CUDA' if p.needs_cuda else 'CPU '}  {json.dumps(p.plan())}")
        return 0
    if args.budget <= 0:
        print("error: --budget must be > 0", file=sys.stderr)
        return 2
    return Runner(args.out, args.budget, args.dry_run, args.only, args.skip).run()


if __name__ == "__main__":
    raise SystemExit(main())
