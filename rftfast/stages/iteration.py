"""One iteration k: find the policy's deficiencies, search them for step-level pairs, optimise on the pairs
(or, the ablation `extra_sft`, plain SFT on the deficient records' ground truth)."""

from __future__ import annotations

import json
import random

from rftfast import distributed
from rftfast.data.io import write_json_atomic
from rftfast.stages.state import RunState, stage_seed


def sample(state: RunState, k: int) -> list[int]:
    """The training records iteration k scores: at most `deficiency.max_records`, a seeded sample."""
    rng = random.Random(stage_seed(state.cfg.seed, f"iter_{k}/sample"))
    idx = list(range(len(state.train)))
    rng.shuffle(idx)
    return sorted(idx[: state.cfg.deficiency.max_records])


def stage_iteration(state: RunState, k: int) -> None:
    from rftfast.mcts import load_pairs, pair_statistics, save_pairs
    from rftfast.train.deficiency import find_deficiencies
    from rftfast.train.preference import train_preference
    from rftfast.train.search_stage import search_pairs

    cfg, it = state.cfg, f"iter_{k}"
    pairs_path = state.dir / it / "pairs.jsonl"

    def deficiency(seed):
        idx = sample(state, k)
        found = find_deficiencies(
            state.model,
            state.tokenizer,
            [state.train[i] for i in idx],
            [state.train_examples[i] for i in idx],
            cfg.deficiency,
            device=cfg.device,
        )
        chosen = [idx[i] for i in found.selected]
        if distributed.is_main():
            write_json_atomic(state.dir / it / "deficient.json", chosen)
        return {"scored": len(idx), "deficient": len(chosen), "greedy_accuracy": found.greedy_accuracy}

    state.stage(f"{it}/deficiency", deficiency)
    deficient = json.loads((state.dir / it / "deficient.json").read_text())

    if cfg.extra_sft:  # the ablation: the same records, plain SFT on their ground truth
        extra_sft(state, it, deficient)
        return

    def search(seed):
        records = [state.train[i] for i in deficient]
        policy = state.dir / ("warmup" if k == 1 else f"iter_{k - 1}") / "model"  # the checkpoint being searched
        pairs, stats = search_pairs(state.model, state.tokenizer, records, cfg.search, seed, model_path=policy)
        if distributed.is_main():
            save_pairs(pairs, pairs_path)
        return {**stats, **pair_statistics(pairs, len(records))}

    state.stage(f"{it}/search", search)
    pairs = load_pairs(pairs_path)  # `rftfast.mcts.Pair`s, as every rank (and a resumed run) reads them

    def preference(seed):
        history = train_preference(
            state.model,
            state.tokenizer,
            pairs,
            cfg.preference,
            seed,
            cfg.device,
            train=cfg.train,
            log=state.step_log(f"{it}/preference"),
        )
        state.save_model(it)
        return {
            "steps": len(history),
            "losses": [h["loss"] for h in history],
            "reward_accuracy": sum(h["rewards/accuracies"] for h in history) / max(1, len(history)),
        }

    state.stage(f"{it}/preference", preference, lambda: state.load_model(it))


def extra_sft(state: RunState, it: str, deficient: list[int]) -> None:
    """The ablation's iteration `it`: SFT on the deficient records with the preference step's budget and
    optimiser settings, so only the objective differs."""
    from rftfast.train.sft import Schedule, train_sft

    pref = state.cfg.preference

    def sft(seed):
        examples = [state.train_examples[i] for i in deficient] or state.train_examples
        steps = max(1, round(pref.epochs * len(examples) / pref.batch_size))
        losses = train_sft(
            state.model,
            state.tokenizer,
            Schedule([examples], [steps], 0.0),
            lr=pref.lr,
            batch_size=pref.batch_size,
            warmup_steps=max(1, steps // 10),
            length_group=1,
            packing=state.cfg.warmup.packing,
            seed=seed,
            device=state.cfg.device,
            desc="extra SFT (ablation)",
            train=state.cfg.train,
            log=state.step_log(f"{it}/extra_sft"),
        )
        state.save_model(it)
        return {"steps": len(losses), "losses": losses}

    state.stage(f"{it}/extra_sft", sft, lambda: state.load_model(it))
