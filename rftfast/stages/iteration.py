"""One iteration k: find the policy's deficiencies, search them for step-level pairs, optimise on the pairs
(or, the ablation `extra_sft`, plain SFT on the deficient records' ground truth).

The pairs are the search's and, with `deficiency.divergence_pairs`, one per greedy failure at its first wrong
step. Beside its losses, the preference stage reports how the policy ranks the same kind of pairs built on the
held-out records the previous checkpoint failed, before and after it trains (`rftfast.train.diagnostics`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import random

from rftfast import distributed
from rftfast.data.io import write_json_atomic
from rftfast.mcts import Pair
from rftfast.stages.state import RunState, stage_seed


def sample(state: RunState, k: int) -> list[int]:
    """The training records iteration k scores: at most `deficiency.max_records`, a seeded sample."""
    rng = random.Random(stage_seed(state.cfg.seed, f"iter_{k}/sample"))
    idx = list(range(len(state.train)))
    rng.shuffle(idx)
    return sorted(idx[: state.cfg.deficiency.max_records])


def stage_iteration(state: RunState, k: int) -> None:
    from rftfast.mcts import load_pairs, pair_statistics, save_pairs
    from rftfast.stages.evaluate import heldout_pairs
    from rftfast.train.deficiency import divergence_pairs, find_deficiencies
    from rftfast.train.diagnostics import pair_margins, rejected_is_greedy
    from rftfast.train.preference import reference_logps, train_preference
    from rftfast.train.search_stage import search_pairs

    cfg, it = state.cfg, f"iter_{k}"
    previous = "warmup" if k == 1 else f"iter_{k - 1}"
    pairs_path = state.dir / it / "pairs.jsonl"
    greedy_pairs_path = state.dir / it / "greedy_pairs.jsonl"

    def deficiency(seed):
        idx = sample(state, k)
        found = find_deficiencies(
            state.model,
            state.tokenizer,
            [state.train[i] for i in idx],
            [state.train_examples[i] for i in idx],
            cfg.deficiency,
            device=cfg.device,
            call_format=state.call_format,
        )
        chosen = [idx[i] for i in found.selected]
        greedy = []
        if cfg.deficiency.divergence_pairs:
            scored = [state.train[i] for i in idx], [state.train_examples[i] for i in idx]
            greedy = divergence_pairs(
                state.tokenizer, *scored, found.greedy_ids, found.greedy_valid, call_format=state.call_format
            )
            # `tree`: the record's place among the searched (deficient) records, as for the search's pairs
            position = {train_index: n for n, train_index in enumerate(chosen)}
            greedy = [dataclasses.replace(p, tree=position[idx[p.tree]]) for p in greedy]
        if distributed.is_main():
            write_json_atomic(state.dir / it / "deficient.json", chosen)
            save_pairs(greedy, greedy_pairs_path)
        return {
            "scored": len(idx),
            "deficient": len(chosen),
            "greedy_accuracy": found.greedy_accuracy,
            "greedy_pairs": len(greedy),
        }

    state.stage(f"{it}/deficiency", deficiency)
    deficient = json.loads((state.dir / it / "deficient.json").read_text())

    if cfg.extra_sft:  # the ablation: the same records, plain SFT on their ground truth
        extra_sft(state, it, deficient)
        return

    def search(seed):
        records = [state.train[i] for i in deficient]
        policy = state.dir / previous / "model"  # the checkpoint being searched
        searched, stats = search_pairs(
            state.model, state.tokenizer, records, cfg.search, seed, model_path=policy, call_format=state.call_format
        )
        greedy = load_pairs(greedy_pairs_path) if greedy_pairs_path.exists() else []
        only_mistakes = cfg.search.policy_mistakes_only
        # a diagnostic, not the method's compute, unless it filters the pairs
        with contextlib.nullcontext() if only_mistakes else state.compute.pause():
            is_greedy = rejected_is_greedy(
                state.model, state.tokenizer, searched, cfg.search.max_new_tokens, call_format=state.call_format
            )
        share = sum(is_greedy) / len(searched) if searched else 0.0
        if only_mistakes:
            searched = [p for p, same in zip(searched, is_greedy, strict=True) if same]
        pairs = merge_pairs(searched, greedy)
        if distributed.is_main():
            save_pairs(pairs, pairs_path)
        dropped = len(is_greedy) - len(searched)
        return {
            **stats,
            **pair_statistics(pairs, len(records)),
            "search_rejected_is_greedy": share,
            "dropped_not_greedy": dropped,
        }

    state.stage(f"{it}/search", search)
    pairs = load_pairs(pairs_path)  # `rftfast.mcts.Pair`s, as every rank (and a resumed run) reads them
    earlier = [state.dir / f"iter_{j}" / "pairs.jsonl" for j in range(max(1, k - cfg.preference.pair_history), k)]
    pairs = merge_pairs(pairs, [p for path in earlier for p in load_pairs(path)])

    held_out = (
        list(heldout_pairs(state, previous).values()) if (state.dir / previous / "heldout.jsonl").exists() else []
    )

    def heldout_logps():  # a diagnostic, not the method's compute
        pad = state.tokenizer.pad_token_id
        with state.compute.pause():
            return reference_logps(
                state.model, held_out, pad, cfg.preference.batch_size, cfg.device, cfg.train.precision
            )

    def preference(seed):
        before = heldout_logps() if held_out else None
        history = train_preference(
            state.model,
            state.tokenizer,
            pairs,
            cfg.preference,
            seed,
            cfg.device,
            train=cfg.train,
            log=state.step_log(f"{it}/preference"),
            replay=state.train_examples,
        )
        state.save_model(it)
        summary = {
            "pairs": len(pairs),  # trained on: this iteration's and, with `pair_history`, earlier ones'
            "steps": len(history),
            "losses": [h["loss"] for h in history],
            "reward_accuracy": sum(h["rewards/accuracies"] for h in history) / max(1, len(history)),
        }
        if held_out:  # the previous checkpoint's held-out failures, as pairs: ranked before and after training
            after = heldout_logps()
            summary["heldout_pairs_before"] = pair_margins(before)
            summary["heldout_pairs_after"] = pair_margins(after, ref_logps=before)
        return summary

    state.stage(f"{it}/preference", preference, lambda: state.load_model(it))


def merge_pairs(searched: list[Pair], more: list[Pair]) -> list[Pair]:
    """The search's pairs, then the other pairs (greedy-divergence or earlier iterations') not already among
    them, each once (same tokens)."""
    seen = {p.tokens for p in searched}
    extra = []
    for p in more:
        if p.tokens not in seen:
            seen.add(p.tokens)
            extra.append(p)
    return sorted(searched + extra, key=lambda p: p.tree)  # stable: the search's pairs first within a record


def extra_sft(state: RunState, it: str, deficient: list[int]) -> None:
    """The ablation's iteration `it`: SFT on the deficient records with the preference step's optimiser settings,
    so only the objective differs, and its step count or, with `extra_sft_tokens`, about that many trained
    positions, padding included, as the compute counts them (`padded_batch_positions`)."""
    from rftfast.train.sft import Schedule, train_sft

    pref, budget = state.cfg.preference, state.cfg.extra_sft_tokens

    def sft(seed):
        examples = [state.train_examples[i] for i in deficient] or state.train_examples
        steps = max(1, round(pref.epochs * len(examples) / pref.batch_size))
        if budget:
            steps = max(1, round(budget / padded_batch_positions(examples, pref.batch_size, seed)))
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


def padded_batch_positions(examples: list, batch_size: int, seed: int, draws: int = 256) -> float:
    """The positions one batch of `batch_size` examples drawn at random computes, padding included (every row as
    long as the batch's longest), estimated over `draws` seeded draws. The examples' mean length instead
    undercounts: matched on it, one comparison's SFT arm trained 43% more positions than intended (RESULTS §8)."""
    rng, lengths, total = random.Random(seed), [len(e.input_ids) for e in examples], 0
    for _ in range(draws):
        # A batch always has `batch_size` rows: with fewer examples, some are drawn again (`Schedule.batches`).
        rows = rng.sample(lengths, batch_size) if len(lengths) >= batch_size else rng.choices(lengths, k=batch_size)
        total += batch_size * max(rows)
    return total / draws
