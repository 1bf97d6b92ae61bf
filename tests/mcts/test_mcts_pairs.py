"""Pair extraction on hand-built trees: which siblings pair up, the filters, the truth as chosen, and the files."""

import dataclasses
import json

import pytest

from rftfast.mcts import Forest, Pair, PairConfig, Truth, extract_pairs, load_pairs, pairs_dataset, save_pairs
from rftfast.mcts.pairs import token_overlap

PROMPT = [100, 101, 102]
LOOSE = PairConfig(min_gap=0.0, max_overlap=1.0, accept_value=-10.0)


def _tree(children, forest=None, tree=0, parent=0):
    """Add children [(tokens, value)] under `parent` and back their values up; returns the child ids."""
    forest = forest or Forest(1, capacity=4, max_children=4)
    n = len(children)
    ids = forest.expand(
        [tree] * n, [parent] * n, [1 / n] * n, [v for _, v in children], tokens=[t for t, _ in children]
    )
    forest.backup([tree] * n, ids, [v for _, v in children])
    return forest, ids.tolist()


def test_best_and_worst_sibling_share_the_prefix():
    forest, (a, b, c) = _tree([([1, 2], 0.2), ([1, 3, 4], 0.9), ([5], -0.5)])
    # Under b: two grandchildren.
    _, (d, e) = _tree([([7, 8], 1.0), ([7, 9], 0.0)], forest, parent=b)
    pairs = extract_pairs(forest, [PROMPT], LOOSE, record_ids=["r"])
    assert [(p.node, p.chosen_ids, p.rejected_ids) for p in pairs] == [(0, [1, 3, 4], [5]), (b, [7, 8], [7, 9])]
    root, inner = pairs
    assert root.prompt_ids == PROMPT and root.answer_start == 3 and root.record_id == "r"
    assert root.divergence == 3  # no common tokens: they differ right after the prompt
    # b's value is the mean of what was backed up through it: its own 0.9 and its children's 1.0 and 0.0
    assert root.chosen_value == pytest.approx((0.9 + 1.0 + 0.0) / 3) and root.chosen_visits == 3
    assert root.rejected_value == -0.5 and root.rejected_visits == 1
    assert inner.prompt_ids == PROMPT + [1, 3, 4] and inner.depth == 1
    assert inner.divergence == len(PROMPT) + 3 + 1  # after the shared prefix and the common token 7
    assert inner.chosen_value == 1.0 and inner.rejected_value == 0.0


def test_filters():
    forest, _ = _tree([([1, 2, 3], 0.5), ([1, 2, 4], 0.45), ([9], -1.0)])
    # Gap: 0.5 vs -1.0 passes a gap of 1.5, not 1.6.
    assert len(extract_pairs(forest, [PROMPT], PairConfig(min_gap=1.5, max_overlap=1.0))) == 1
    assert not extract_pairs(forest, [PROMPT], PairConfig(min_gap=1.6, max_overlap=1.0))
    # Chosen value must reach accept_value.
    assert not extract_pairs(forest, [PROMPT], PairConfig(min_gap=0.0, accept_value=0.6))
    # Overlap: chosen [1, 2, 3] against the worst [9] shares nothing.
    assert len(extract_pairs(forest, [PROMPT], PairConfig(min_gap=0.0, max_overlap=0.0))) == 1
    forest, _ = _tree([([1, 2, 3], 0.5), ([1, 2, 4], 0.0)])
    assert token_overlap([1, 2, 3], [1, 2, 4]) == pytest.approx(2 / 3)
    assert not extract_pairs(forest, [PROMPT], PairConfig(min_gap=0.0, max_overlap=0.6))
    assert len(extract_pairs(forest, [PROMPT], PairConfig(min_gap=0.0, max_overlap=0.7))) == 1


def test_identical_siblings_count_once_and_empty_ones_never():
    forest, ids = _tree([([1, 2], 0.8), ([1, 2], 0.8), ([], -1.0)])
    assert not extract_pairs(forest, [PROMPT], LOOSE)  # one distinct non-empty child: no pair
    forest, ids = _tree([([1, 2], 0.8), ([1, 2], 0.8), ([3], 0.1)])
    (pair,) = extract_pairs(forest, [PROMPT], LOOSE)
    assert pair.chosen_ids == [1, 2] and pair.rejected_ids == [3]


def test_ties_go_to_the_better_explored_child():
    forest, (a, b) = _tree([([1], 0.5), ([2], 0.5)])
    _tree([([3], 0.5)], forest, parent=b)  # b now has 2 visits, mean 0.5
    (pair,) = extract_pairs(forest, [PROMPT], PairConfig(min_gap=0.0, max_overlap=1.0))
    assert pair.chosen_ids == [2] and pair.chosen_visits == 2 and pair.rejected_ids == [1]


def test_value_kinds():
    forest, (a, b) = _tree([([1], 0.0), ([2], 0.3)])
    _tree([([3], 1.0)], forest, parent=a)  # a: reward 0.0, mean 0.5
    by_mean = extract_pairs(forest, [PROMPT], PairConfig(min_gap=0.0, max_overlap=1.0, accept_value=-1))
    by_reward = extract_pairs(
        forest, [PROMPT], PairConfig(min_gap=0.0, max_overlap=1.0, accept_value=-1, value="reward")
    )
    assert by_mean[0].chosen_ids == [1] and by_reward[0].chosen_ids == [2]


def test_truth_step_as_chosen():
    forest, (a, b) = _tree([([1, 2], 0.5), ([6], -1.0)])
    _, (c, d) = _tree([([3], 0.2), ([4], 0.1)], forest, parent=a)
    truth = Truth(answer_ids=(1, 2, 5, 9), step_ends=(2, 3, 4))
    pairs = extract_pairs(forest, [PROMPT], PairConfig(min_gap=0.0, max_overlap=1.0, truth_value=1.0), truth=[truth])
    root, inner = pairs
    # At the root the truth's first step [1, 2] was written by a sibling: its own value stands.
    assert root.chosen_is_truth and root.chosen_ids == [1, 2] and root.rejected_ids == [6]
    assert root.chosen_value == pytest.approx((0.5 + 0.2 + 0.1) / 3)
    # Under [1, 2] no child wrote [5]: the truth's step comes in with truth_value.
    assert inner.chosen_is_truth and inner.chosen_ids == [5] and inner.chosen_value == 1.0
    assert inner.rejected_ids == [4] and inner.prompt_ids == PROMPT + [1, 2]
    assert Truth((1, 2, 5), (2, 3)).next_step([1]) is None  # not at a step boundary


def test_many_trees_and_validation():
    forest = Forest(2, capacity=4, max_children=2)
    _tree([([1], 1.0), ([2], 0.0)], forest, tree=1)
    (pair,) = extract_pairs(forest, [[7], [8, 9]], LOOSE, record_ids=["x", "y"])
    assert pair.tree == 1 and pair.record_id == "y" and pair.prompt_ids == [8, 9]
    with pytest.raises(ValueError, match="one per tree"):
        extract_pairs(forest, [[7]], LOOSE)


def test_save_load_and_dataset(tmp_path):
    forest, (a, b, c) = _tree([([1, 2], 0.2), ([1, 3, 4], 0.9), ([5], -0.5)])
    pairs = extract_pairs(forest, [PROMPT], LOOSE, record_ids=["r"])
    path = tmp_path / "out" / "pairs.jsonl"
    assert save_pairs(pairs, path) == len(pairs)
    assert [p.to_json() for p in load_pairs(path)] == [p.to_json() for p in pairs]
    assert not [f for f in path.parent.iterdir() if f.name != "pairs.jsonl"]  # no temp file left behind
    ds = pairs_dataset(path)
    assert len(ds) == len(pairs) and ds[0]["chosen_ids"] == pairs[0].chosen_ids
    assert set(ds.column_names) >= {"prompt_ids", "chosen_ids", "rejected_ids", "chosen_value", "divergence"}
    assert len(pairs_dataset([])) == 0
    path.write_text(json.dumps({"record_id": "r"}) + "\n")
    with pytest.raises(ValueError, match="pairs.jsonl:1"):
        load_pairs(path)
    assert Pair.from_json(pairs[0].to_json()) == pairs[0]


def test_pair_statistics_count_what_the_pairs_hold():
    from rftfast.mcts import pair_statistics

    def pair(record, depth, chosen_value, rejected_value, truth):
        return Pair(record, 0, 1, depth, PROMPT, [1], [2], chosen_value, rejected_value, 1, 1, 3, 3, truth)

    pairs = [pair("a", 0, 1.0, 0.0, True), pair("a", 2, 0.5, 0.25, False), pair("b", 0, 1.0, 0.5, True)]
    pairs[2] = dataclasses.replace(pairs[2], origin="greedy")
    stats = pair_statistics(pairs, searched_records=4)
    assert stats == {
        "pairs": 3,
        "records_with_pairs": 2,
        "pairs_per_record": 0.75,
        "chosen_is_truth": pytest.approx(2 / 3),
        "from_greedy": pytest.approx(1 / 3),
        "mean_value_gap": pytest.approx((1.0 + 0.25 + 0.5) / 3),
        "depths": {"0": 2, "2": 1},
    }
    assert pair_statistics([], 0)["pairs_per_record"] == 0.0
