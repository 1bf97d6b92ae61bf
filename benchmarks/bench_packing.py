"""Tree packing against padded rows, side by side in one run: tokens computed, wall time and peak memory.

Preference: one epoch (policy forward + backward, with the reference precomputed in one pass) on the
pairs of a real default-run search (the fixture) and on synthetic trees with 1 and 4 pairs per record,
packed (`preference.packing=true`) and per-pair padded, from the same initial weights. Warm-up: SFT steps
of the default run's schedule (the same examples per step), packed and length-grouped.

    python benchmarks/bench_packing.py                      # the whole table (a few minutes on 2 cores)
    python benchmarks/bench_packing.py --quick              # a smoke run in seconds
    python benchmarks/bench_packing.py --pairs PAIRS.jsonl --model DIR --json OUT.json

With `--pairs` only that preference comparison runs and `OUT.json` holds
`{"packed": {"tokens", "seconds", "final_loss", "peak_mb"}, "padded": {...}}`, tokens being the positions
the model computed (padding included). Every arm runs in a fresh process, so its peak resident memory
(above what it held before the epoch) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "pairs_default_iter1.jsonl"


# ----------------------------------------------------------------------------- workers (one arm each)


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (Linux) and return the current resident size in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS") * 1024


def _peak_rss() -> int:
    return _status_kb("VmHWM") * 1024


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def _model(path: str | None, vocab: int):
    import torch

    if path:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(path, torch_dtype=torch.float32)
    from rftfast.train.model import ModelConfig, build_tiny_llama

    return build_tiny_llama(ModelConfig(), vocab, seed=0)  # the default run's shape


def preference_tokens(pairs, batch_size: int, steps: int, seed: int) -> dict[str, int]:
    """Positions each layout computes in one epoch: the reference pass, then the policy's batches."""
    from rftfast.train.packing import pack_trees
    from rftfast.train.preference import _pair_batches, pair_tree

    batches = [pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size)]
    batches += [[pairs[j] for j in idx] for idx, _ in _pair_batches(len(pairs), batch_size, steps, seed)]
    padded = sum(
        2 * len(b) * max(len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in b) for b in batches
    )
    packed = sum(pack_trees([pair_tree(b)]).num_tokens for b in batches)
    return {"padded": padded, "packed": packed}


def work_preference(args) -> dict:
    import torch

    from rftfast.mcts import load_pairs
    from rftfast.train.preference import PreferenceConfig, train_preference
    from rftfast.train.runtime import TrainConfig, flush_denormals

    torch.set_num_threads(args.threads)
    pairs = load_pairs(args.pairs)
    model = _model(args.model, 1 + max(max(p.prompt_ids + p.chosen_ids + p.rejected_ids) for p in pairs))
    cfg = PreferenceConfig(epochs=1.0, packing=args.arm == "packed")
    steps = max(1, round(cfg.epochs * len(pairs) / cfg.batch_size))

    class Pad:  # train_preference reads only the pad id of the tokenizer
        pad_token_id = 0

    base = _reset_peak_rss()
    start = time.perf_counter()
    with flush_denormals(True):
        history = train_preference(model, Pad(), pairs, cfg, seed=0, train=TrainConfig())
    seconds = time.perf_counter() - start
    tokens = preference_tokens(pairs, cfg.batch_size, steps, 0)[args.arm]
    return {
        "tokens": tokens,
        "seconds": seconds,
        "final_loss": history[-1]["loss"],
        "steps": len(history),
        "peak_mb": (_peak_rss() - base) / 2**20,
    }


def _warmup_data(records: int, path: str | None = None):
    """The default run's examples, tokenizer and initial model (or the checkpoint at `path`)."""
    from rftfast.config import load_config
    from rftfast.data.chat import answer_content, fallback_prompt, render_example
    from rftfast.data.toolworld import generate
    from rftfast.train.model import load_policy

    cfg = load_config(None)
    train = generate(records, seed=cfg.data.seed, levels=tuple(cfg.data.levels))
    corpus = [fallback_prompt(r.messages, r.tools) + answer_content(r) for r in train]
    if path:
        cfg.model.path = path
    model, tokenizer = load_policy(cfg.model, corpus, 0)
    examples = [render_example(r, tokenizer) for r in train]
    keep = [i for i, e in enumerate(examples) if len(e.input_ids) <= cfg.model.max_length]
    return cfg, [train[i] for i in keep], [examples[i] for i in keep], model, tokenizer


def warmup_batches(examples, levels, cfg, steps: int):
    import dataclasses

    from rftfast.train.sft import make_schedule

    w = dataclasses.replace(cfg.warmup, epochs=steps * cfg.warmup.batch_size / len(examples))
    schedule = make_schedule(examples, levels, w, seed=0)
    return schedule, w


def work_warmup(args) -> dict:
    import torch

    from rftfast.train.batching import pad_batch
    from rftfast.train.packing import pack_trees
    from rftfast.train.runtime import TrainConfig, flush_denormals
    from rftfast.train.sft import example_trees, train_sft

    torch.set_num_threads(args.threads)
    cfg, records, examples, model, tokenizer = _warmup_data(args.records, args.model)
    levels = [float(r.meta.get("level", 0)) for r in records]
    schedule, w = warmup_batches(examples, levels, cfg, args.steps)
    packing = args.arm == "packed"
    tokens = 0
    for _, batch in schedule.batches(w.batch_size, 0, w.length_group):
        if packing:
            tokens += pack_trees(example_trees(batch)).num_tokens
        else:
            tokens += pad_batch([e.input_ids for e in batch], [e.answer_start for e in batch], 0)["input_ids"].numel()
    base = _reset_peak_rss()
    start = time.perf_counter()
    with flush_denormals(True):
        losses = train_sft(
            model,
            tokenizer,
            schedule,
            lr=w.lr,
            batch_size=w.batch_size,
            warmup_steps=w.warmup_steps,
            length_group=w.length_group,
            packing=packing,
            seed=0,
            train=TrainConfig(),
        )
    seconds = time.perf_counter() - start
    return {
        "tokens": tokens,
        "seconds": seconds,
        "steps": len(losses),
        "steps_per_s": len(losses) / seconds,
        "final_loss": losses[-1],
        "peak_mb": (_peak_rss() - base) / 2**20,
    }


# ----------------------------------------------------------------------------- the driver


def synthetic_pairs(path: Path, records: int, pairs_per_record: int, seed: int = 0) -> None:
    """Pairs shaped like a search's: a ~230-token prompt, an answer so far that grows along the tree,
    ~7-token steps; `pairs_per_record` pairs at different nodes of one record's tree (token ids below 3,000:
    any tokenizer of the default run's size has them)."""
    from rftfast.mcts import Pair, save_pairs

    rng = random.Random(seed)
    out = []
    for r in range(records):
        prompt = [rng.randrange(3, 3000) for _ in range(rng.randrange(180, 280))]
        answer = [rng.randrange(3, 3000) for _ in range(40)]
        for k in range(pairs_per_record):
            so_far = answer[: rng.randrange(0, 30)]
            chosen = answer[len(so_far) : len(so_far) + rng.randrange(4, 10)]
            rejected = [rng.randrange(3, 3000) for _ in range(rng.randrange(4, 10))]
            ids = prompt + so_far
            out.append(Pair(f"s{r}", r, k, len(so_far), ids, chosen, rejected, 1.0, 0.0, 1, 1, len(prompt), len(ids)))
    save_pairs(out, path)


def run_arm(kind: str, arm: str, extra: list[str], threads: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", kind, "--arm", arm, "--threads", str(threads), *extra]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{kind}/{arm} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(kind: str, extra: list[str], threads: int, repeats: int) -> dict:
    """Both arms, alternating, `repeats` times each; the median time is reported."""
    runs: dict[str, list[dict]] = {"packed": [], "padded": []}
    for _ in range(repeats):
        for arm in runs:
            runs[arm].append(run_arm(kind, arm, extra, threads))
    out = {}
    for arm, rs in runs.items():
        rs.sort(key=lambda r: r["seconds"])
        out[arm] = rs[len(rs) // 2] | {"seconds_all": [r["seconds"] for r in rs]}
    return out


HEADER = (
    "| workload | padded tokens | packed tokens | ratio | padded s | packed s | speed-up | padded MB | packed MB "
    "| padded loss | packed loss |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def row(name: str, res: dict) -> str:
    p, q = res["packed"], res["padded"]
    return (
        f"| {name} | {q['tokens']:,} | {p['tokens']:,} | {q['tokens'] / p['tokens']:.2f}x | {q['seconds']:.2f} | "
        f"{p['seconds']:.2f} | {q['seconds'] / p['seconds']:.2f}x | {q['peak_mb']:.0f} | {p['peak_mb']:.0f} | "
        f"{q['final_loss']:.4f} | {p['final_loss']:.4f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", help="a pairs JSONL (rftfast.mcts.save_pairs); alone: only this comparison")
    ap.add_argument("--model", help="a checkpoint directory (default: the default run's shape, seeded)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--steps", type=int, default=120, help="warm-up steps timed")
    ap.add_argument("--records", type=int, default=3000, help="tool-world records the warm-up draws from")
    ap.add_argument("--worker", choices=["preference", "warmup"], help=argparse.SUPPRESS)
    ap.add_argument("--arm", choices=["packed", "padded"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        work = work_preference if args.worker == "preference" else work_warmup
        print(json.dumps(work(args)))
        return
    model = ["--model", args.model] if args.model else []
    if args.pairs:
        res = compare("preference", ["--pairs", args.pairs, *model], args.threads, args.repeats)
        print(HEADER)
        print(row(Path(args.pairs).name, res))
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
        return
    repeats = 1 if args.quick else args.repeats
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sources = {"default-run search (fixture)": str(FIXTURE)}
        for k in (1, 4):
            path = Path(tmp) / f"synthetic_{k}.jsonl"
            synthetic_pairs(path, records=8 if args.quick else 40, pairs_per_record=k)
            sources[f"synthetic, {k} pair(s) per record"] = str(path)
        if args.quick:
            sources.pop("default-run search (fixture)")
        for name, path in sources.items():
            results[name] = compare("preference", ["--pairs", path, *model], args.threads, repeats)
            print(f"preference: {name} done", file=sys.stderr)
        steps = ["--steps", str(8 if args.quick else args.steps), "--records", str(400 if args.quick else args.records)]
        steps += model  # from a checkpoint: a trained model's step (the middle of a warm-up, not its first steps)
        results["warm-up SFT"] = compare("warmup", steps, args.threads, repeats)
    print(HEADER)
    for name, res in results.items():
        print(row(name, res))
    w = results["warm-up SFT"]
    print(
        f"\nwarm-up: {w['padded']['steps_per_s']:.2f} steps/s length-grouped, {w['packed']['steps_per_s']:.2f} packed"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
