"""One DPO step of the LM head, side by side: rftfast, naive torch, Liger, TRL's fused head, and the bare matmul floor.

A step is the policy forward + backward and the reference forward (or precomputed reference
log-probs) over B pairs × T tokens. Every variant runs in a fresh process so that peak memory
is its own; memory is the process's peak resident size above what it held once the inputs
existed (inputs: hidden states, reference hidden states, head weight, labels).

    python benchmarks/bench_dpo_step.py                     # CPU table, H=1024, V=32000, N=2048/4096/8192
    python benchmarks/bench_dpo_step.py --quick             # small shapes, a smoke run in seconds
    python benchmarks/bench_dpo_step.py --device cuda --dtype bf16 --hidden 4096 --vocab 128256 --tokens 16384

Ratios are against the floor measured in the same run: the matmuls a DPO step cannot avoid
(policy forward, reference forward, gradient w.r.t. hidden, gradient w.r.t. weight; three
products with a precomputed reference).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
WITH_REF = ["floor", "naive", "liger", "trl", "rftfast", "rftfast-recompute"]
PRECOMPUTED = ["floor-precomputed", "naive-precomputed", "trl-precomputed", "rftfast-precomputed"]
# Rows of logits per tile in TRL's fused head, the value its DPOTrainer's `add_fused_lm_head` passes.
TRL_CHUNK_SIZE = 32768


# ----------------------------------------------------------------------------- one variant (worker)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _inputs(args, torch):
    g = torch.Generator(device="cpu").manual_seed(0)
    dtype = getattr(torch, DTYPES[args.dtype])
    b, t = args.tokens // (2 * args.seq_len), args.seq_len
    hidden = torch.randn(2 * b, t, args.hidden, generator=g).to(args.device, dtype).requires_grad_()
    ref_hidden = torch.randn(2 * b, t, args.hidden, generator=g).to(args.device, dtype)
    weight = torch.randn(args.vocab, args.hidden, generator=g).mul_(args.hidden**-0.5).to(args.device, dtype)
    weight.requires_grad_()
    labels = torch.randint(0, args.vocab, (2 * b, t), generator=g).to(args.device)
    labels[:, : t // 8] = -100  # the prompt part carries no labels
    return hidden, ref_hidden, weight, labels


def _naive_step(hidden, weight, labels, ref_hidden, ref_logps, beta=0.1):
    """TRL-style: materialised logits, log_softmax, gather, then the sigmoid DPO loss."""
    import torch
    import torch.nn.functional as F

    def seq_logps(h):
        logits = (h @ weight.T).float()
        lp = logits.log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (lp * (labels != -100)).sum(-1)

    policy = seq_logps(hidden)
    if ref_logps is None:
        with torch.no_grad():
            ref_logps = seq_logps(ref_hidden)
    p = policy.shape[0] // 2
    delta = (policy[:p] - ref_logps[:p]) - (policy[p:] - ref_logps[p:])
    loss = -F.logsigmoid(beta * delta).mean()
    loss.backward()
    return loss


def _trl_step(hidden, weight, labels, ref_hidden, ref_logps, beta=0.1):
    """TRL 1.16's DPOTrainer head: its chunked log-prob function (`trl.kernels`) for the policy, with the extra
    outputs the trainer logs (entropy, mean logit, top-1), and for the reference (log-probs only), then the
    sigmoid loss. Like TRL, it scores only the labelled positions where Triton runs, every position elsewhere."""
    import torch
    import torch.nn.functional as F
    from trl.kernels import ChunkedLogProbFunction

    mask = labels != -100
    compact = hidden.device.type == "cuda"

    def seq_logps(h, outputs):
        rows = h[mask] if compact else h.reshape(-1, h.shape[-1])
        targets = labels[mask] if compact else labels.clamp(min=0).reshape(-1)
        logp = ChunkedLogProbFunction.apply(rows, weight, None, targets, 1.0, TRL_CHUNK_SIZE, None, 1.0, outputs)[0]
        per_token = logp.new_zeros(mask.shape).masked_scatter(mask, logp) if compact else logp.view(mask.shape)
        return (per_token * mask).sum(-1)

    policy = seq_logps(hidden, ("log_probs", "entropy", "mean_logits", "is_top1"))
    if ref_logps is None:
        with torch.no_grad():
            ref_logps = seq_logps(ref_hidden, ("log_probs",))
    p = policy.shape[0] // 2
    delta = (policy[:p] - ref_logps[:p]) - (policy[p:] - ref_logps[p:])
    loss = -F.logsigmoid(beta * delta).mean()
    loss.backward()
    return loss


def _variant_step(name, torch, hidden, ref_hidden, weight, labels, ref_logps):
    """A closure that runs one step of `name` and returns the loss."""
    flat_h, flat_r = hidden.detach().reshape(-1, hidden.shape[-1]), ref_hidden.reshape(-1, hidden.shape[-1])
    if name.startswith("floor"):
        # The bare products: logits of policy (and reference), then both gradients from a logits-shaped grad.
        def step():
            logits = flat_h @ weight.detach().T
            if name == "floor":
                del logits
                logits = flat_r @ weight.detach().T
            grad_hidden = logits @ weight.detach()
            grad_weight = logits.T @ flat_h
            return grad_hidden.sum() + grad_weight.sum()

        return step
    if name.startswith("naive"):
        return lambda: _naive_step(hidden, weight, labels, ref_hidden, ref_logps if "precomputed" in name else None)
    if name.startswith("trl"):
        return lambda: _trl_step(hidden, weight, labels, ref_hidden, ref_logps if "precomputed" in name else None)
    if name == "liger":
        from liger_kernel.chunked_loss import LigerFusedLinearDPOLoss

        fn = LigerFusedLinearDPOLoss(beta=0.1, compiled=True)

        def step():
            loss, _ = fn(weight, hidden, labels, None, ref_hidden, weight.detach(), None)
            loss.backward()
            return loss

        return step
    from rftfast import FusedDPOLoss

    fn = FusedDPOLoss("sigmoid", beta=0.1, strategy="recompute" if name == "rftfast-recompute" else "auto")

    def step():
        if name == "rftfast-precomputed":
            out = fn(hidden, weight, labels, ref_logps=ref_logps)
        else:
            out = fn(hidden, weight, labels, ref_hidden=ref_hidden)
        out.loss.backward()
        return out.loss

    return step


def run_worker(args) -> dict:
    import torch

    hidden, ref_hidden, weight, labels = _inputs(args, torch)
    ref_logps = None
    if "precomputed" in args.worker:
        from rftfast import sequence_logprobs

        with torch.no_grad():
            ref_logps = sequence_logprobs(ref_hidden, weight, labels)
    cuda = args.device == "cuda"
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    step = _variant_step(args.worker, torch, hidden, ref_hidden, weight, labels, ref_logps)
    times = []
    for i in range(args.warmup + args.repeats):
        hidden.grad = weight.grad = None
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = step()
        if cuda:
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if cuda else _peak_rss_bytes()) - base
    # Every variant must hand back grad_hidden and grad_weight: memory beyond them is working memory.
    grads = sum(t.numel() * t.element_size() for t in (hidden, weight))
    return {
        "variant": args.worker,
        "tokens": args.tokens,
        "seconds": min(times),
        "all_seconds": times,
        "peak_above_inputs_mib": peak / 2**20,
        "working_mib": (peak - grads) / 2**20,
        "loss": float(loss),
    }


# ----------------------------------------------------------------------------- driver


def _run_variant(args, variant, tokens) -> dict:
    cmd = [sys.executable, __file__, "--worker", variant, "--tokens", str(tokens)]
    for key in ("hidden", "vocab", "seq_len", "dtype", "device", "warmup", "repeats"):
        cmd += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"variant": variant, "tokens": tokens, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _table(rows, sizes) -> str:
    lines = []
    for tokens in sizes:
        group = {r["variant"]: r for r in rows if r["tokens"] == tokens}
        lines.append(f"\nN = {tokens} tokens")
        lines.append(
            "| variant | time (s) | × floor | peak above inputs (MiB) | vs naive | "
            "working: above inputs + grads (MiB) | vs naive |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|---:|")
        for name, r in group.items():
            if "error" in r:
                lines.append(f"| {name} | failed: {' '.join(r['error'])[:80]} | | | | | |")
                continue
            base = "-precomputed" if "precomputed" in name else ""
            floor, naive = group.get("floor" + base, {}), group.get("naive" + base, {})

            def ratio(key, of, r=r):
                return r[key] / of[key] if of.get(key) else float("nan")

            lines.append(
                f"| {name} | {r['seconds']:.3f} | {ratio('seconds', floor):.3f} | "
                f"{r['peak_above_inputs_mib']:.0f} | {ratio('peak_above_inputs_mib', naive):.1%} | "
                f"{r['working_mib']:.0f} | {ratio('working_mib', naive):.1%} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, nargs="+", default=[2048, 4096, 8192], help="N = 2 × B × T")
    ap.add_argument("--seq-len", type=int, default=512, help="T, tokens per sequence")
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", nargs="+", default=WITH_REF + PRECOMPUTED)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small shapes: a smoke run in seconds")
    ap.add_argument("--json", help="also write the raw rows to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.tokens = args.tokens[0]
        print(json.dumps(run_worker(args)))
        return 0
    if args.quick:
        args.tokens, args.seq_len, args.hidden, args.vocab = [512], 128, 256, 4096
        args.variants = [v for v in args.variants if v != "liger"]  # its torch.compile warm-up dominates
    rows = []
    try:
        from tqdm import tqdm
    except ImportError:  # progress is a nicety

        def tqdm(x, **_):
            return x

    jobs = [(t, v) for t in args.tokens for v in args.variants]
    for tokens, variant in tqdm(jobs, desc="variants (each in a fresh process)", unit="run"):
        rows.append(_run_variant(args, variant, tokens))
    print(
        f"\nDPO step of the LM head: H={args.hidden}, V={args.vocab}, T={args.seq_len}, {args.dtype}, "
        f"{args.device}; best of {args.repeats} after {args.warmup} warm-up"
    )
    print(_table(rows, args.tokens))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
