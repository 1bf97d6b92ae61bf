"""The evaluation stage: held-out accuracy of the current policy, overall and by difficulty, and what changed
since the checkpoint before it (records fixed and broken, the fix rate of its first wrong steps)."""

from __future__ import annotations

import json

from rftfast import distributed
from rftfast.data.io import write_jsonl_atomic
from rftfast.mcts import Pair
from rftfast.stages.state import RunState


def stage_eval(state: RunState, name: str, previous: str | None = None) -> dict:
    """Evaluate the checkpoint `name` ("warmup", "iter_k") as stage `<name>/eval`; returns its record. Each
    record's answer goes to `<name>/heldout.jsonl`; with `previous` (the checkpoint evaluated before), the
    record also says what changed since (`rftfast.train.diagnostics.verdict_changes`)."""
    from rftfast.mcts import ground_truth
    from rftfast.train.diagnostics import verdict_changes
    from rftfast.train.evaluate import heldout_accuracy

    def evaluate(seed):
        metrics, judged = heldout_accuracy(
            state.model,
            state.tokenizer,
            state.heldout,
            state.heldout_examples,
            state.cfg.eval.max_new_tokens,
            state.cfg.eval.batch_size,
            call_format=state.call_format,
        )
        rows = [
            {"id": r.id, "valid": j.result.valid, "failure": j.result.category, "output": j.output,
             "output_ids": list(j.output_ids)}
            for r, j in zip(state.heldout, judged, strict=True)
        ]  # fmt: skip
        if distributed.is_main():
            write_jsonl_atomic(rows, state.dir / name / "heldout.jsonl")
        if previous is not None and (state.dir / previous / "heldout.jsonl").exists():  # older runs lack it
            before = heldout_answers(state, previous)
            truths = [ground_truth(r, state.tokenizer) for r in state.heldout]
            metrics["changes"] = verdict_changes(
                [row["valid"] for row in before],
                [row["valid"] for row in rows],
                heldout_pairs(state, previous),
                truths,
                [row["output_ids"] for row in rows],
            )
        if state.log is not None:
            # One metrics row, at the global step the run has reached, so held-out accuracy lies beside the
            # losses in metrics.jsonl and its mirrors. Its stage is this one (a resume keeps or drops it with
            # the stage's record); its series is "eval" for every checkpoint, so TensorBoard and W&B draw one
            # accuracy curve over the run rather than a point per stage.
            state.log(f"{name}/eval", 0, eval_scalars(metrics), series="eval")
        return metrics

    return state.stage(f"{name}/eval", evaluate)


def eval_scalars(metrics: dict) -> dict[str, float]:
    """The numbers of an evaluation's record as flat metrics: `accuracy`, `accuracy/<difficulty>`,
    `failures/<category>` (counts) and, with a checkpoint before, what changed since (`fixed`, `broken`,
    `fix_rate`)."""
    out = {"accuracy": metrics["accuracy"]}
    out.update({f"accuracy/{group}": acc for group, acc in metrics["by_difficulty"].items()})
    out.update({f"failures/{kind}": n for kind, n in metrics["failures"].items()})
    changes = metrics.get("changes") or {}
    out.update({key: changes[key] for key in ("fixed", "broken", "fix_rate") if key in changes})
    return out


def heldout_answers(state: RunState, name: str) -> list[dict]:
    """The held-out answers of checkpoint `name`'s evaluation, one row per held-out record."""
    with open(state.dir / name / "heldout.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def heldout_pairs(state: RunState, name: str) -> dict[int, Pair]:
    """Record index → the divergence pair of each held-out record checkpoint `name` failed: the same pairs the
    iterations train on, built on records they never see."""
    from rftfast.train.deficiency import divergence_pairs

    rows = heldout_answers(state, name)
    pairs = divergence_pairs(
        state.tokenizer,
        state.heldout,
        state.heldout_examples,
        [row["output_ids"] for row in rows],
        [row["valid"] for row in rows],
        call_format=state.call_format,
    )
    return {p.tree: p for p in pairs}
