"""The end-of-run summary: a console table, `report.json`, and `report.png`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rftfast.config import RunConfig

if TYPE_CHECKING:
    from pathlib import Path


def _checkpoints(stages: dict) -> list[str]:
    return [name.removesuffix("/eval") for name in stages if name.endswith("/eval")]


def accuracy_table(stages: dict) -> str:
    """Held-out accuracy by difficulty after warm-up and after each iteration."""
    names = _checkpoints(stages)
    levels = sorted({lvl for n in names for lvl in stages[f"{n}/eval"]["by_difficulty"]})
    lines = ["| after | " + " | ".join(levels) + " | all |", "|---|" + "---:|" * (len(levels) + 1)]
    for n in names:
        ev = stages[f"{n}/eval"]
        cells = " | ".join(f"{ev['by_difficulty'].get(lvl, float('nan')):.1%}" for lvl in levels)
        lines.append(f"| {n} | {cells} | {ev['accuracy']:.1%} |")
    return "\n".join(lines)


def stage_table(stages: dict) -> str:
    lines = ["| stage | seconds | outcome |", "|---|---:|---|"]
    keys = (
        "train",
        "heldout",
        "steps",
        "final_loss",
        "scored",
        "deficient",
        "greedy_accuracy",
        "pairs",
        "pairs_per_record",
        "chosen_is_truth",
        "prefill_reuse",
        "reward_accuracy",
        "accuracy",
    )
    for name, s in stages.items():
        outcome = ", ".join(f"{k}={s[k]:.3g}" if isinstance(s[k], float) else f"{k}={s[k]}" for k in keys if k in s)
        lines.append(f"| {name} | {s['seconds']:.1f} | {outcome} |")
    return "\n".join(lines)


def failures_table(stages: dict) -> str:
    """Held-out failures by the checker's category after each checkpoint, and what changed since the one before."""
    names = _checkpoints(stages)
    kinds = sorted({k for n in names for k in stages[f"{n}/eval"].get("failures", {})})
    lines = [
        "| after | " + " | ".join(kinds) + " | fixed | broken | fix rate |",
        "|---|" + "---:|" * (len(kinds) + 3),
    ]
    for n in names:
        ev = stages[f"{n}/eval"]
        changes = ev.get("changes")
        moved = f"{changes['fixed']} | {changes['broken']} | {changes['fix_rate']:.1%}" if changes else " | | "
        lines.append(f"| {n} | " + " | ".join(str(ev.get("failures", {}).get(k, 0)) for k in kinds) + f" | {moved} |")
    return "\n".join(lines)


def pairs_table(stages: dict) -> str:
    """Per iteration: where its pairs came from and whether training on them carried over to held-out pairs."""
    lines = [
        "| iteration | pairs | from greedy | search rejected = greedy | held-out pairs | ranked right before"
        " | after | reward accuracy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, search in stages.items():
        if not name.endswith("/search"):
            continue
        it = name.removesuffix("/search")
        pref = stages.get(f"{it}/preference", {})
        before, after = pref.get("heldout_pairs_before", {}), pref.get("heldout_pairs_after", {})
        cells = [
            str(search.get("pairs", 0)),
            f"{search.get('from_greedy', 0.0):.1%}",
            f"{search['search_rejected_is_greedy']:.1%}" if "search_rejected_is_greedy" in search else "",
            str(before.get("pairs", "")),
            f"{before['ranked_right']:.1%}" if "ranked_right" in before else "",
            f"{after['ranked_right']:.1%}" if "ranked_right" in after else "",
            f"{after['reward_accuracy']:.1%}" if "reward_accuracy" in after else "",
        ]
        lines.append(f"| {it} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(stages: dict, path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = _checkpoints(stages)
    fig, (ax_acc, ax_sft, ax_pref) = plt.subplots(1, 3, figsize=(15, 4))
    levels = sorted({lvl for n in names for lvl in stages[f"{n}/eval"]["by_difficulty"]})
    for lvl in levels:
        ax_acc.plot(names, [stages[f"{n}/eval"]["by_difficulty"].get(lvl) for n in names], marker="o", label=lvl)
    ax_acc.plot(names, [stages[f"{n}/eval"]["accuracy"] for n in names], marker="s", color="black", lw=2, label="all")
    ax_acc.set(title="held-out accuracy (BFCL rules)", ylim=(0, 1))
    ax_acc.legend(fontsize=7)
    if "warmup" in stages:
        ax_sft.plot(stages["warmup"].get("losses", []))
    ax_sft.set(title="warm-up SFT loss (sampled steps)", xlabel="step", yscale="log")
    for name, s in stages.items():
        if name.endswith(("/preference", "/extra_sft")):
            ax_pref.plot(s.get("losses", []), label=name)
    ax_pref.set(title="iteration losses", xlabel="step")
    if ax_pref.lines:
        ax_pref.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(cfg: RunConfig, stages: dict, write: bool = True) -> dict:
    """Print the summary, write report.json and report.png into the run directory; return the report.

    `write=False` (ranks other than 0) only returns it."""
    report = {
        "config": cfg.to_dict(),
        "stages": stages,
        "accuracy": {n: stages[f"{n}/eval"]["accuracy"] for n in _checkpoints(stages)},
    }
    if _checkpoints(stages):  # the last evaluated checkpoint: the run's result, a plain transformers model
        report["final_model"] = str(cfg.run_dir / _checkpoints(stages)[-1] / "model")
    if not write:
        return report
    (cfg.run_dir / "report.json").write_text(json.dumps(report, indent=1))
    plot(stages, cfg.run_dir / "report.png")
    print("\nHeld-out accuracy (greedy decoding, BFCL AST rules):")
    print(accuracy_table(stages))
    print("\nHeld-out failures by category, and the records fixed and broken since the checkpoint before:")
    print(failures_table(stages))
    if any(name.endswith("/search") for name in stages):
        print("\nPairs: where they came from, and how the policy ranks the same kind of pairs on held-out failures:")
        print(pairs_table(stages))
    print("\nStages:")
    print(stage_table(stages))
    print(f"\nreport: {cfg.run_dir / 'report.json'}, {cfg.run_dir / 'report.png'}")
    if "final_model" in report:
        print(f"final model: {report['final_model']}")
    return report
