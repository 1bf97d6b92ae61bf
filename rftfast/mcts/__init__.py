"""MCTS over answer steps: a compiled forest of search trees, the batched search, rewards, preference pairs.

    forest.py     the trees as arrays, mutated by numba kernels (select_leaves, expand, backup, best_child)
    reference.py  the same rules on plain Python objects: the tests' oracle and the benchmark's baseline
    search.py     lockstep rounds over all trees with one batched generator call per round
    rewards.py    ast_reward (BFCL rules, step credit, in any call format), JudgeReward (the policy grades), MixedReward
    pairs.py      sibling preference pairs, their filters, JSONL and datasets I/O

This package knows nothing of torch: it talks to models only through `rftfast.generation.base.Generator`.
"""

from rftfast.mcts.forest import Forest
from rftfast.mcts.pairs import (
    Pair,
    PairConfig,
    Truth,
    answer_format,
    divergence_pair,
    extract_pairs,
    ground_truth,
    load_pairs,
    pair_statistics,
    pairs_dataset,
    save_pairs,
)
from rftfast.mcts.rewards import JudgeReward, MixedReward, ast_reward, ast_reward_in, judge_reward
from rftfast.mcts.search import SearchConfig, SearchResult, SearchStats, search

__all__ = [
    "Forest",
    "JudgeReward",
    "MixedReward",
    "Pair",
    "PairConfig",
    "SearchConfig",
    "SearchResult",
    "SearchStats",
    "Truth",
    "answer_format",
    "ast_reward",
    "ast_reward_in",
    "divergence_pair",
    "extract_pairs",
    "ground_truth",
    "judge_reward",
    "load_pairs",
    "pair_statistics",
    "pairs_dataset",
    "save_pairs",
    "search",
]
