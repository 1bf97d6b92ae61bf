"""`rftfast compare`: do the iterations beat the same compute spent on plain SFT? Three arms, same seeds, one table.

- `iterations`: the config as given, warm-up then K iterations of deficiency → search → preference.
- `sft_on_deficient`: the same warm-up (forked from the first arm's run, not retrained), then K iterations of
  plain SFT on each iteration's deficient records, training on as many positions as the preference stages did.
- `longer_warmup`: no iterations; the warm-up gets more epochs, so that it spends the first arm's whole
  iteration compute (scoring, search and training, in token passes: `rftfast.train.compute`) on more SFT.

Each arm is an ordinary run under `<out_dir>/<name>-compare/<arm>-s<seed>/`, resumable like any run: a
comparison started again continues where it stopped. Compute and wall time exclude the evaluations, which
are the same for every arm. The table goes to `compare.md` and everything to `compare.json` beside the runs.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from pathlib import Path

from rftfast.config import RunConfig, validate
from rftfast.data.io import write_json_atomic
from rftfast.pipeline import run
from rftfast.stages.run_dir import fork_run

ARMS = ("iterations", "sft_on_deficient", "longer_warmup")


def compare(cfg: RunConfig, seeds: Sequence[int], arms: Sequence[str] = ARMS) -> dict:
    """Run the arms for every seed (`seed` and `data.seed` both set to it); returns {"rows", "table"}."""
    unknown = set(arms) - set(ARMS)
    if unknown or "iterations" not in arms:
        raise ValueError(f"arms: expected 'iterations' and any of {ARMS[1:]}, got {list(arms)}")
    if cfg.iterations < 1:
        raise ValueError("iterations: a comparison needs at least one iteration")
    validate(cfg)
    folder = cfg.run_dir.with_name(f"{cfg.name}-compare")
    rows = []
    for seed in seeds:
        base = dataclasses.replace(
            cfg, out_dir=str(folder), seed=seed, data=dataclasses.replace(cfg.data, seed=seed), extra_sft=False
        )
        first = _run(dataclasses.replace(base, name=f"iterations-s{seed}"))
        stages = first["stages"]
        warmup_accuracy = stages["warmup/eval"]["accuracy"]  # every arm's gain is measured from this one
        rows.append(_row("iterations", seed, first, warmup_accuracy))
        if "sft_on_deficient" in arms:
            trained = [s["compute"]["training_tokens"] for n, s in stages.items() if n.endswith("/preference")]
            arm = dataclasses.replace(
                base,
                name=f"sft_on_deficient-s{seed}",
                extra_sft=True,
                extra_sft_tokens=max(1, round(statistics.mean(trained))),
            )
            fork_run(folder / f"iterations-s{seed}", arm.run_dir, ("data", "warmup", "warmup/eval"), arm.to_dict())
            rows.append(_row("sft_on_deficient", seed, _run(arm), warmup_accuracy))
        if "longer_warmup" in arms:
            spent = _iteration_compute(stages)
            warmup = stages["warmup"]["compute"]["token_passes"]
            epochs = base.warmup.epochs * (1 + spent / warmup)
            arm = dataclasses.replace(
                base,
                name=f"longer_warmup-s{seed}",
                iterations=0,
                warmup=dataclasses.replace(base.warmup, epochs=epochs),
            )
            rows.append(_row("longer_warmup", seed, _run(arm), warmup_accuracy))
    table = comparison_table(rows)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "compare.json", {"config": cfg.to_dict(), "seeds": list(seeds), "rows": rows})
    (folder / "compare.md").write_text(table + "\n")
    print(f"\nCompute-matched comparison ({folder}):")
    print(table)
    return {"rows": rows, "table": table}


def _run(cfg: RunConfig) -> dict:
    """The run of `cfg`: started, or continued where a previous comparison left it."""
    return run(cfg, resume=(cfg.run_dir / "manifest.json").exists())


def _iteration_compute(stages: dict) -> int:
    """Token passes of every iteration stage but the evaluations."""
    return sum(
        s.get("compute", {}).get("token_passes", 0)
        for name, s in stages.items()
        if name.startswith("iter_") and not name.endswith("/eval")
    )


def _row(arm: str, seed: int, report: dict, warmup_accuracy: float) -> dict:
    work = {n: s for n, s in report["stages"].items() if n != "data" and not n.endswith("/eval")}
    return {
        "arm": arm,
        "seed": seed,
        "warmup_accuracy": warmup_accuracy,
        "final_accuracy": list(report["accuracy"].values())[-1],
        "token_passes": sum(s.get("compute", {}).get("token_passes", 0) for s in work.values()),
        "seconds": round(sum(s["seconds"] for s in work.values()), 1),
        "run_dir": str(Path(report["final_model"]).parents[1]),
    }


def comparison_table(rows: Sequence[dict]) -> str:
    """One line per arm and seed, then each arm's mean: the final held-out accuracy and its gain over the
    default-length warm-up of the same seed; compute in millions of token passes."""
    lines = [
        "| arm | seed | warm-up | final | gain | compute (M token passes) | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arm']} | {r['seed']} | {r['warmup_accuracy']:.1%} | {r['final_accuracy']:.1%} | "
            f"{100 * (r['final_accuracy'] - r['warmup_accuracy']):+.1f} | {r['token_passes'] / 1e6:.1f} | "
            f"{r['seconds']:.0f} |"
        )
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        final = statistics.mean(r["final_accuracy"] for r in mine)
        gain = statistics.mean(r["final_accuracy"] - r["warmup_accuracy"] for r in mine)
        lines.append(
            f"| **{arm}, mean** | {len(mine)} seeds | "
            f"{statistics.mean(r['warmup_accuracy'] for r in mine):.1%} | {final:.1%} | {100 * gain:+.1f} | "
            f"{statistics.mean(r['token_passes'] for r in mine) / 1e6:.1f} | "
            f"{statistics.mean(r['seconds'] for r in mine):.0f} |"
        )
    return "\n".join(lines)
