"""The warm-up stage: easy-to-hard SFT on the training examples."""

from __future__ import annotations

from rftfast.stages.state import RunState


def difficulty(state: RunState) -> list[float]:
    """Each training example's difficulty, as `warmup.difficulty` measures it (higher: later)."""
    how = state.cfg.warmup.difficulty
    if how == "level":
        return [float(r.meta.get("level", 0)) for r in state.train]
    if how == "steps":
        return [float(sum(1 + len(c.arguments) for c in r.answer)) if r.is_call else 0.0 for r in state.train]
    from rftfast.train.deficiency import answer_perplexities

    return answer_perplexities(state.model, state.tokenizer, state.train_examples, device=state.cfg.device)


def stage_warmup(state: RunState) -> None:
    from rftfast.train.sft import make_schedule, train_sft

    w = state.cfg.warmup

    def warmup(seed):
        schedule = make_schedule(state.train_examples, difficulty(state), w, seed)
        losses = train_sft(
            state.model,
            state.tokenizer,
            schedule,
            lr=w.lr,
            batch_size=w.batch_size,
            warmup_steps=w.warmup_steps,
            length_group=w.length_group,
            packing=w.packing,
            seed=seed,
            device=state.cfg.device,
            train=state.cfg.train,
            log=state.step_log("warmup"),
        )
        state.save_model("warmup")
        return {"steps": len(losses), "losses": losses[:: max(1, len(losses) // 200)], "final_loss": losses[-1]}

    state.stage("warmup", warmup, lambda: state.load_model("warmup"))
