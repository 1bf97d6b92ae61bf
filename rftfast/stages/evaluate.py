"""The evaluation stage: held-out accuracy of the current policy, overall and by difficulty."""

from __future__ import annotations

from rftfast.stages.state import RunState


def stage_eval(state: RunState, name: str) -> dict:
    """Evaluate the checkpoint `name` ("warmup", "iter_k") as stage `<name>/eval`; returns its record."""
    from rftfast.train.evaluate import heldout_accuracy

    def evaluate(seed):
        return heldout_accuracy(
            state.model,
            state.tokenizer,
            state.heldout,
            state.heldout_examples,
            state.cfg.eval.max_new_tokens,
            state.cfg.eval.batch_size,
        )

    return state.stage(f"{name}/eval", evaluate)
