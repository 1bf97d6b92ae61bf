"""The search stage: step-level preference pairs for the deficient records, from the current policy."""

from __future__ import annotations

from collections.abc import Sequence

from rftfast.config import SearchConfig
from rftfast.data.record import Record


def search_pairs(model, tokenizer, records: Sequence[Record], cfg: SearchConfig, seed: int) -> tuple[list, dict]:
    """Run the MCTS over `records` with the transformers backend (prefix KV reuse on).

    Returns the `rftfast.mcts.Pair`s and the stats the report shows (simulations, time split, prefill reuse).
    """
    from rftfast.generation import TransformersGenerator
    from rftfast.mcts import JudgeReward, MixedReward, PairConfig, ast_reward, search
    from rftfast.mcts import SearchConfig as TreeConfig

    if not records:
        return [], {"simulations": 0}
    generator = TransformersGenerator(model, tokenizer, prefix_cache=True)
    reward = ast_reward
    if cfg.reward in ("judge", "mix"):
        judge = JudgeReward(generator, tokenizer)
        reward = judge if cfg.reward == "judge" else MixedReward([(ast_reward, 0.5), (judge, 0.5)])
    tree = TreeConfig(samples_per_expansion=cfg.samples, rounds=cfg.rounds, leaves_per_tree=cfg.leaves_per_tree,
                      max_depth=cfg.max_depth, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                      top_p=cfg.top_p, seed=seed, c=cfg.c, rule=cfg.rule,
                      ground_truth_chosen=cfg.include_ground_truth, pairs=PairConfig(min_gap=cfg.min_gap))
    result = search(records, generator, reward, tree, tokenizer=tokenizer)
    s, g = result.stats, generator.stats
    stats = {"simulations": s.simulations, "nodes": s.nodes, "search_seconds": round(s.wall_seconds, 2),
             "generator_seconds": round(s.generator_seconds, 2),
             "bookkeeping_fraction": round(s.bookkeeping_seconds / max(s.wall_seconds, 1e-9), 4),
             "prefill_computed": g.prefill_computed, "prefill_reused": g.prefill_reused,
             "prefill_reuse": round(g.reuse_fraction, 3)}
    return list(result.pairs), stats
