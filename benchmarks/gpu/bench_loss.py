"""One DPO step of the LM head on a GPU: rftfast against naive torch, Liger, cut-cross-entropy and TRL.

A step is the forward and backward of the sigmoid DPO loss (beta 0.1) from the policy's hidden
states and the head weight, with the reference's hidden states through the same head (no grad):
    loss = -mean_pairs logsigmoid(beta * ((pc - rc) - (pr - rr)))
over summed completion log-probs (the prompt's labels, the first T/8 of each sequence, are -100).
Shapes: H=4096, V=128256 (Llama-3), bf16, T=512 tokens per sequence, N = 16384 and 4096 tokens.

Variants (each in a fresh process, so that peak memory is its own):
    floor              the four bare matmuls a DPO step cannot avoid (policy and reference logits,
                       grad wrt hidden, grad wrt weight); no loss, no softmax
    rftfast-fused      FusedDPOLoss(strategy="fused", backend="triton"): the gradients are formed in
                       the forward (policy logits by the chunked torch head, reference by Triton)
    rftfast-recompute  FusedDPOLoss(strategy="recompute", backend="triton"): Triton forward and
                       recomputing backward, autograd through the objective
    naive              materialised logits, float32 log_softmax, gather (TRL's classic path)
    liger              liger_kernel.chunked_loss.LigerFusedLinearDPOLoss (compiled=True, its default)
    cce                cut_cross_entropy.linear_cross_entropy(reduction="none") as the log-prob
                       engine (its defaults: impl="cce", filter_eps="high") under the same DPO formula
    trl                trl.kernels.ChunkedLogProbFunction (the fused log-prob path TRL's DPOTrainer
                       patches into the model, chunk 32768) under the same DPO formula

Time: CUDA events around each step, the median of `--repeats` after `--warmup` steps (the first
of which compiles). Memory: torch.cuda.max_memory_allocated() during the steps minus what was
allocated once the inputs existed (hidden, reference hidden, weight, labels); that includes the
grads each variant hands back (grad_hidden, grad_weight), which are also reported on their own.
An out-of-memory error is recorded as status "oom". Every row also carries the loss and the grad
norms, compared across variants (against "naive") as a cross-check.

    python benchmarks/gpu/bench_loss.py --out gpu-out/bench.json      # what run.sh runs
    python benchmarks/gpu/bench_loss.py --dry-run                     # the plan, nothing run

This module imports nothing heavy at the top: the formula and the engines import torch when called,
so the plan and the formula can be used (and tested) on a CPU machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import time

HIDDEN, VOCAB, SEQ_LEN, BETA, IGNORE = 4096, 128256, 512, 0.1, -100
TOKENS = (16384, 4096)
VARIANTS = ("floor", "rftfast-fused", "rftfast-recompute", "naive", "liger", "cce", "trl")
# The module each variant needs beyond torch (checked before a worker is started).
NEEDS = {
    "rftfast-fused": "rftfast",
    "rftfast-recompute": "rftfast",
    "liger": "liger_kernel",
    "cce": "cut_cross_entropy",
    "trl": "trl",
}
TRL_CHUNK = 32768  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE, what its DPOTrainer uses
RESULT_MARK = "BENCH_RESULT "
ACTIVE: set = set()  # worker processes running now (each in its own process group), for a caller to end


def plan(tokens=TOKENS, variants=VARIANTS) -> dict:
    """What a run measures, without running anything."""
    return {
        "hidden": HIDDEN,
        "vocab": VOCAB,
        "seq_len": SEQ_LEN,
        "dtype": "bf16",
        "beta": BETA,
        "tokens": list(tokens),
        "variants": list(variants),
        "jobs": [f"{v}@N={n}" for n in tokens for v in variants],
    }


# ----------------------------------------------------------------------------- the DPO formula


def sequence_sums(token_logps, labels, ignore_index: int = IGNORE):
    """[2B, T] per-token log-probs -> [2B] summed over the counted (non-ignored) labels."""
    return (token_logps.reshape(labels.shape) * (labels != ignore_index)).sum(-1)


def dpo_sigmoid_loss(policy_seq, ref_seq, beta: float = BETA):
    """TRL's sigmoid DPO loss of [2B] sequence log-probs, the B chosen first."""
    import torch.nn.functional as F

    p = policy_seq.shape[0] // 2
    delta = (policy_seq[:p] - ref_seq[:p]) - (policy_seq[p:] - ref_seq[p:])
    return -F.logsigmoid(beta * delta).mean()


def dpo_loss_from_engine(engine, hidden, ref_hidden, weight, labels, beta: float = BETA, **engine_kw):
    """The DPO loss with `engine(hidden [N, H], weight, labels [N]) -> fp32 [N]` as the log-prob engine
    (0 at ignored labels); the reference goes through the same engine without grad."""
    import torch

    h, r, y = hidden.reshape(-1, hidden.shape[-1]), ref_hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)
    policy = engine(h, weight, y, **engine_kw)
    with torch.no_grad():
        ref = engine(r, weight.detach(), y, **engine_kw)
    return dpo_sigmoid_loss(sequence_sums(policy.float(), labels), sequence_sums(ref.float(), labels), beta)


def naive_token_logps(hidden, weight, labels, ignore_index: int = IGNORE):
    """Materialised logits (in the inputs' dtype), float32 log_softmax, gather."""
    logits = (hidden @ weight.T).float()
    lp = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return lp * (labels != ignore_index)


def cce_token_logps(hidden, weight, labels, ignore_index: int = IGNORE, impl: str = "cce"):
    """cut-cross-entropy's per-token loss, negated: its reduction="none" gives 0 at ignored labels."""
    from cut_cross_entropy import linear_cross_entropy

    return -linear_cross_entropy(hidden, weight, labels, ignore_index=ignore_index, reduction="none", impl=impl)


def trl_token_logps(hidden, weight, labels, ignore_index: int = IGNORE):
    """TRL's ChunkedLogProbFunction on the counted rows, scattered back (as its fused LM head does)."""
    from trl.kernels import ChunkedLogProbFunction

    mask = labels != ignore_index
    logps = ChunkedLogProbFunction.apply(hidden[mask], weight, None, labels[mask], 1.0, TRL_CHUNK, None, 1.0, ())[0]
    return logps.new_zeros(mask.shape).masked_scatter(mask, logps)


ENGINES = {"naive": naive_token_logps, "cce": cce_token_logps, "trl": trl_token_logps}


# ----------------------------------------------------------------------------- one variant (worker)


def make_inputs(torch, tokens: int, hidden_size: int, vocab: int, seq_len: int, dtype, device, seed: int = 0):
    """hidden [2B, T, H] (requires grad), ref_hidden (close to it), weight [V, H] (requires grad), labels."""
    if tokens % (2 * seq_len):
        raise ValueError(f"tokens={tokens} must be a multiple of 2 * seq_len = {2 * seq_len}")
    g = torch.Generator(device=device).manual_seed(seed)
    seqs = tokens // seq_len
    hidden = torch.randn(seqs, seq_len, hidden_size, device=device, generator=g)
    ref_hidden = (hidden + 0.1 * torch.randn(hidden.shape, device=device, generator=g)).to(dtype)
    hidden = hidden.to(dtype).requires_grad_()
    weight = (torch.randn(vocab, hidden_size, device=device, generator=g) * hidden_size**-0.5).to(dtype)
    weight.requires_grad_()
    labels = torch.randint(0, vocab, (seqs, seq_len), device=device, generator=g)
    labels[:, : seq_len // 8] = IGNORE  # the prompt carries no labels
    return hidden, ref_hidden, weight, labels


def make_step(variant: str, hidden, ref_hidden, weight, labels, beta: float = BETA, **engine_kw):
    """A closure running one step of `variant` (forward + backward); returns the loss (or a stand-in).
    `engine_kw` goes to the log-prob engine of naive/cce/trl (e.g. impl="torch_compile" for cce on CPU);
    for liger, compiled=False skips its torch.compile (as on CPU in the tests)."""
    if variant == "floor":
        flat_h, flat_r, w = hidden.detach().flatten(0, 1), ref_hidden.flatten(0, 1), weight.detach()

        def step():
            logits = flat_h @ w.T
            del logits
            logits = flat_r @ w.T  # stands in for the logit gradient: same shape and dtype
            hidden.grad = (logits @ w).view(hidden.shape)
            weight.grad = logits.T @ flat_h
            return hidden.grad.float().sum()

        return step
    if variant in ENGINES:
        engine = ENGINES[variant]

        def step():
            loss = dpo_loss_from_engine(engine, hidden, ref_hidden, weight, labels, beta, **engine_kw)
            loss.backward()
            return loss

        return step
    if variant == "liger":
        from liger_kernel.chunked_loss import LigerFusedLinearDPOLoss

        fn = LigerFusedLinearDPOLoss(
            beta=beta, ignore_index=IGNORE, compiled=engine_kw.get("compiled", True), use_ref_model=True
        )

        def step():
            loss = fn(weight, hidden, labels, None, ref_hidden, weight.detach(), None)[0]
            loss.backward()
            return loss

        return step
    if variant in ("rftfast-fused", "rftfast-recompute"):
        from rftfast import FusedDPOLoss

        fn = FusedDPOLoss("sigmoid", beta=beta, ignore_index=IGNORE, strategy=variant.split("-")[1], backend="triton")

        def step():
            out = fn(hidden, weight, labels, ref_hidden=ref_hidden)
            out.loss.backward()
            return out.loss

        return step
    raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")


def run_worker(variant: str, tokens: int, args) -> dict:
    import torch

    row = {"variant": variant, "tokens": tokens}
    if not torch.cuda.is_available():
        return {**row, "status": "skipped", "reason": "no CUDA"}
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}[args.dtype]
    inputs = make_inputs(torch, tokens, args.hidden, args.vocab, args.seq_len, dtype, "cuda")
    hidden, _, weight, _ = inputs
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    grads_bytes = sum(t.numel() * t.element_size() for t in (hidden, weight))
    times, warm = [], []
    try:
        step = make_step(variant, *inputs)
        for i in range(args.warmup + args.repeats):
            hidden.grad = weight.grad = None
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = step()
            end.record()
            end.synchronize()
            (warm if i < args.warmup else times).append(start.elapsed_time(end) / 1e3)
        loss = float(loss.detach())
    except torch.cuda.OutOfMemoryError as e:
        return {
            **row,
            "status": "oom",
            "reason": str(e).splitlines()[0][:300],
            "peak_mib": torch.cuda.max_memory_allocated() / 2**20,
        }
    peak = torch.cuda.max_memory_allocated() - base
    norms = {
        f"grad_{name}_norm": float(t.grad.float().norm()) if t.grad is not None else None
        for name, t in (("hidden", hidden), ("weight", weight))
    }
    return {
        **row,
        "status": "ok",
        "median_s": statistics.median(times),
        "seconds": times,
        "warmup_s": warm,
        "peak_above_inputs_mib": peak / 2**20,
        "grads_mib": grads_bytes / 2**20,
        "working_mib": (peak - grads_bytes) / 2**20,
        "loss": loss,
        **norms,
    }


# ----------------------------------------------------------------------------- driver


def kill_group(proc: subprocess.Popen) -> None:
    """End `proc`'s whole process group: SIGTERM, then SIGKILL if it has not gone within 5 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            continue


def _run_job(variant: str, tokens: int, args, limit_s: float) -> dict:
    row = {"variant": variant, "tokens": tokens}
    need = NEEDS.get(variant)
    if need and importlib.util.find_spec(need) is None:
        return {**row, "status": "skipped", "reason": f"{need} is not installed"}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", variant, "--tokens", str(tokens)]
    for key in ("hidden", "vocab", "seq_len", "dtype", "warmup", "repeats"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    ACTIVE.add(proc)
    try:
        out, err = proc.communicate(timeout=limit_s)
        timed_out = False
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        timed_out = True
    finally:
        ACTIVE.discard(proc)
    wall = time.monotonic() - start
    if err.strip():
        sys.stderr.write(err if err.endswith("\n") else err + "\n")
    found = [line[len(RESULT_MARK) :] for line in out.splitlines() if line.startswith(RESULT_MARK)]
    if found:
        return {**json.loads(found[-1]), "process_s": round(wall, 1)}
    if timed_out:
        return {**row, "status": "timeout", "reason": f"no result within {limit_s:.0f} s", "process_s": round(wall, 1)}
    tail = [line for line in err.strip().splitlines() if line.strip()][-1:] or [f"exit code {proc.returncode}"]
    oom = "OutOfMemoryError" in err or "out of memory" in err
    return {
        **row,
        "status": "oom" if oom else "failed",
        "reason": tail[0][:300],
        "exit_code": proc.returncode,
        "process_s": round(wall, 1),
    }


def cross_check(rows: list[dict]) -> None:
    """Relative differences of each ok row's loss and grad norms from the naive row of the same N."""
    for row in rows:
        base = next(
            (r for r in rows if r["variant"] == "naive" and r["tokens"] == row["tokens"] and r.get("status") == "ok"),
            None,
        )
        if row.get("status") != "ok" or base is None or row["variant"] in ("floor", "naive"):
            continue
        for key in ("loss", "grad_hidden_norm", "grad_weight_norm"):
            a, b = row.get(key), base.get(key)
            if a is not None and b:
                row[f"{key}_rel_diff_vs_naive"] = abs(a - b) / abs(b)


def table(rows: list[dict]) -> str:
    lines = [
        "| N | variant | status | median step (ms) | x floor | peak above inputs (MiB) | working (MiB) |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        floor = next(
            (r for r in rows if r["variant"] == "floor" and r["tokens"] == row["tokens"] and r.get("status") == "ok"),
            None,
        )
        if row.get("status") == "ok":
            ratio = f"{row['median_s'] / floor['median_s']:.2f}" if floor else ""
            lines.append(
                f"| {row['tokens']} | {row['variant']} | ok | {row['median_s'] * 1e3:.1f} | {ratio} | "
                f"{row['peak_above_inputs_mib']:.0f} | {row['working_mib']:.0f} |"
            )
        else:
            why = f"{row.get('status')}: {row.get('reason', '')}"[:70].replace("|", "/")
            lines.append(f"| {row['tokens']} | {row['variant']} | {why} | | | | |")
    return "\n".join(lines)


def run_bench(args) -> dict:
    deadline = time.monotonic() + args.budget
    rows: list[dict] = []
    config = {
        **plan(args.tokens, args.variants),
        "hidden": args.hidden,
        "vocab": args.vocab,
        "seq_len": args.seq_len,
        "dtype": args.dtype,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "timing": "CUDA events, median",
        "memory": "max_memory_allocated minus inputs",
    }
    result = {"config": config, "rows": rows}
    for tokens in args.tokens:
        for variant in args.variants:
            left = deadline - time.monotonic()
            if left < args.min_job:
                rows.append(
                    {
                        "variant": variant,
                        "tokens": tokens,
                        "status": "skipped",
                        "reason": f"bench budget of {args.budget:.0f} s spent",
                    }
                )
                continue
            print(f"bench: {variant} at N={tokens} (limit {min(args.job_limit, left):.0f} s)", flush=True)
            rows.append(_run_job(variant, tokens, args, min(args.job_limit, left)))
            r = rows[-1]
            print(
                f"bench: {variant} at N={tokens}: {r['status']}"
                + (
                    f", {r['median_s'] * 1e3:.1f} ms, {r['peak_above_inputs_mib']:.0f} MiB"
                    if r["status"] == "ok"
                    else f" ({r.get('reason', '')})"
                ),
                flush=True,
            )
            cross_check(rows)
            if args.out:
                _write_json(args.out, result)
    return result


def _write_json(path: str, data) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=list(TOKENS), help="N = 2 x B x T")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--hidden", type=int, default=HIDDEN)
    ap.add_argument("--vocab", type=int, default=VOCAB)
    ap.add_argument("--seq-len", type=int, default=SEQ_LEN)
    ap.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (the first compiles)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps; the median is reported")
    ap.add_argument("--budget", type=float, default=200.0, help="seconds for the whole benchmark")
    ap.add_argument("--job-limit", type=float, default=75.0, help="seconds for one variant's process")
    ap.add_argument("--min-job", type=float, default=15.0, help="start no job with less time than this left")
    ap.add_argument("--out", help="write the rows as JSON here (after every job)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan as JSON; run nothing")
    ap.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.dry_run:
        print(json.dumps(plan(args.tokens, args.variants), indent=1))
        return 0
    if args.worker:
        print(RESULT_MARK + json.dumps(run_worker(args.worker, args.tokens[0], args)), flush=True)
        return 0
    result = run_bench(args)
    print(
        f"\nDPO step, H={args.hidden}, V={args.vocab}, T={args.seq_len}, {args.dtype}; median of {args.repeats} "
        f"after {args.warmup} warm-up steps"
    )
    print(table(result["rows"]))
    return 1 if any(r["status"] in ("failed", "timeout") for r in result["rows"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
