"""The compiled forest against the plain-Python reference of the same rules, on random traces."""

import numpy as np
import pytest

from rftfast.mcts import Forest
from rftfast.mcts.forest import Expansion
from rftfast.mcts.reference import ReferenceForest


def _trace_round(rng, tree_ids, node_ids, max_children, p_terminal):
    """Random children for the selected leaves: arity, priors summing to 1 per parent, values, terminal flags."""
    trees, parents, priors, values, terminal = [], [], [], [], []
    for t, n in zip(tree_ids, node_ids):
        arity = int(rng.integers(1, max_children + 1))
        p = rng.random(arity) + 0.05
        p /= p.sum()
        trees += [int(t)] * arity
        parents += [int(n)] * arity
        priors += p.tolist()
        # Coarse values make exact ties between siblings common, so tie-breaking is exercised too.
        values += (rng.integers(-4, 5, arity) / 4).tolist()
        terminal += (rng.random(arity) < p_terminal).tolist()
    return trees, parents, priors, values, terminal


def _assert_same(forest: Forest, ref: ReferenceForest):
    for t, nodes in enumerate(ref.trees):
        n = len(nodes)
        assert forest.num_nodes[t] == n
        assert forest.visits[t, :n].tolist() == [x.visits for x in nodes]
        assert forest.value_sum[t, :n].tolist() == [x.value_sum for x in nodes]  # bit for bit
        assert forest.parent[t, :n].tolist() == [-1 if x.parent is None else x.parent.id for x in nodes]
        assert forest.exhausted[t, :n].tolist() == [x.exhausted for x in nodes]
        assert forest.depth[t, :n].tolist() == [x.depth for x in nodes]
        for x in nodes:
            assert forest.children_of(t, x.id).tolist() == [ch.id for ch in x.children]


CASES = [
    # (rule, backup, k, virtual_loss, max_depth, p_terminal, c)
    ("uct", "mean", 1, 1.0, None, 0.0, 1.0),
    ("uct", "sum", 3, 1.0, 6, 0.1, 1.4),
    ("puct", "mean", 4, 2.0, 5, 0.2, 2.0),
    ("puct", "sum", 2, 0.0, None, 0.3, 0.5),
    ("uct", "mean", 5, 0.5, 3, 0.05, 3.0),
    # k = 1 takes the interleaved descents (`_select_one_each`): with depth limits and dead leaves, so lanes
    # restart, trees run out, and lanes move on to later trees (5 trees, 4 lanes)
    ("uct", "mean", 1, 1.0, 3, 0.2, 1.0),
    ("puct", "sum", 1, 0.0, 4, 0.3, 2.0),
    ("uct", "sum", 1, 2.0, 2, 0.5, 0.5),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_forest_matches_reference(case, seed):
    rule, backup, k, vl, max_depth, p_terminal, c = case
    rng = np.random.default_rng(seed)
    num_trees, max_children = 5, 4
    forest = Forest(num_trees, capacity=2, max_children=max_children, backup=backup)  # grows several times
    ref = ReferenceForest(num_trees, max_children, backup=backup)
    for _ in range(40):
        tree_ids, node_ids = forest.select_leaves(k, c, rule, vl, max_depth)
        ref_trees, ref_nodes = ref.select_leaves(k, c, rule, vl, max_depth)
        assert tree_ids.tolist() == ref_trees and node_ids.tolist() == ref_nodes
        if not len(tree_ids):
            break
        trees, parents, priors, values, terminal = _trace_round(rng, tree_ids, node_ids, max_children, p_terminal)
        children = forest.expand(trees, parents, priors, values, terminal)
        assert children.tolist() == ref.expand(trees, parents, priors, values, terminal)
        forest.backup(trees, children, values)
        ref.backup(trees, children.tolist(), values)
        # Now and then the generator cannot extend a leaf.
        if rng.random() < 0.1:
            forest.mark_terminal([trees[0]], [children[0]])
            ref.mark_terminal([trees[0]], [int(children[0])])
    _assert_same(forest, ref)
    all_nodes = [(t, n) for t in range(num_trees) for n in range(int(forest.num_nodes[t]))]
    ts, ns = [t for t, _ in all_nodes], [n for _, n in all_nodes]
    for by in ("visits", "value", "mean", "reward"):
        assert forest.best_child(ts, ns, by).tolist() == ref.best_child(ts, ns, by)


def test_select_is_distinct_and_respects_depth():
    forest = Forest(1, capacity=4, max_children=3)
    t, n = forest.select_leaves(k=4)
    assert t.tolist() == [0] and n.tolist() == [0]  # only the root exists: picked once
    children = forest.expand([0, 0, 0], [0, 0, 0], [0.2, 0.3, 0.5], [0.0, 0.5, 1.0])
    forest.backup([0, 0, 0], children, [0.0, 0.5, 1.0])
    t, n = forest.select_leaves(k=5, c=1.0, rule="puct")
    assert sorted(n.tolist()) == [1, 2, 3]  # three distinct leaves, no repeats
    t, n = forest.select_leaves(k=2, max_depth=1)
    assert len(n) == 0 and forest.exhausted[0, 0]  # every leaf is at the depth limit: the tree is done


def test_virtual_loss_spreads_selection():
    forest = Forest(1, capacity=8, max_children=2)
    ch = forest.expand([0, 0], [0, 0], [0.5, 0.5], [1.0, 0.0])
    forest.backup([0, 0], ch, [1.0, 0.0])
    gc = forest.expand([0, 0], [1, 1], [0.5, 0.5], [1.0, 1.0])
    forest.backup([0, 0], gc, [1.0, 1.0])
    # Without virtual loss the second descent still prefers node 1's subtree (its other leaf).
    _, n = forest.select_leaves(k=2, c=0.0, virtual_loss=0.0)
    assert n.tolist() == [3, 4]
    # A large virtual loss sends the second descent to the other branch.
    _, n = forest.select_leaves(k=2, c=0.0, virtual_loss=10.0)
    assert n.tolist() == [3, 2]


def test_terminal_children_exhaust_their_parent():
    forest = Forest(1, capacity=4, max_children=2)
    ch = forest.expand([0, 0], [0, 0], [0.5, 0.5], [1.0, -1.0], terminal=[True, True])
    assert forest.exhausted[0, 0] and forest.terminal[0, ch].all()
    assert len(forest.select_leaves(k=3)[0]) == 0
    with pytest.raises(ValueError, match="exhausted"):
        forest.expand([0], [1], [1.0], [0.0])


def test_arrays_are_read_only_and_errors_change_nothing():
    forest = Forest(2, capacity=2, max_children=2)
    with pytest.raises(ValueError):
        forest.visits[0, 0] = 3
    with pytest.raises(ValueError, match="max_children"):
        forest.expand([0, 0, 0], [0, 0, 0], [0.3] * 3, [0.0] * 3)
    with pytest.raises(IndexError):
        forest.expand([1], [5], [1.0], [0.0])
    with pytest.raises(IndexError):
        forest.expand([2], [0], [1.0], [0.0])
    with pytest.raises(IndexError):
        forest.backup([0], [1], [1.0])
    assert forest.num_nodes.tolist() == [1, 1] and forest.num_children[:, 0].tolist() == [0, 0]
    with pytest.raises(ValueError, match="rule"):
        forest.select_leaves(rule="ucb")


def test_spans_paths_and_growth():
    forest = Forest(2, capacity=1, max_children=2)
    a = forest.expand([1, 1], [0, 0], [0.5, 0.5], [0.1, 0.2], tokens=[[5, 6], [7]])
    b = forest.expand([1], [a[0]], [1.0], [0.3], tokens=[[8, 9, 10]])
    assert forest.capacity >= 4
    assert forest.path(1, int(b[0])) == [0, int(a[0]), int(b[0])]
    assert forest.path_tokens(1, int(b[0])).tolist() == [5, 6, 8, 9, 10]
    assert forest.span(1, int(a[1])).tolist() == [7] and forest.span(1, 0).tolist() == []
    assert forest.depth[1, b[0]] == 2 and forest.prior[1, 0] == 1.0


def test_backup_of_arbitrary_nodes_matches_reference():
    # Backups in any order, repeats and ancestors included: the shared walks of siblings must not change a bit.
    rng = np.random.default_rng(7)
    forest, ref = Forest(2, capacity=4, max_children=3), ReferenceForest(2, 3)
    for _ in range(30):
        t = int(rng.integers(2))
        parent = int(rng.integers(forest.num_nodes[t]))
        if forest.num_children[t, parent] < 3:
            args = ([t], [parent], [0.5], [0.0])
            assert forest.expand(*args).tolist() == ref.expand(*args)
    for _ in range(20):
        trees = rng.integers(0, 2, 12)
        nodes = [int(rng.integers(forest.num_nodes[t])) for t in trees]
        trees[3:6], nodes[3:6] = trees[2], [nodes[2]] * 3  # repeats in a row
        values = rng.normal(size=12) / 7
        forest.backup(trees, nodes, values)
        ref.backup(trees.tolist(), nodes, values.tolist())
    _assert_same(forest, ref)


# ================================================================================================================
# The one-call round against the separate calls
# ================================================================================================================

FIELDS = ("parent", "children", "num_children", "depth", "visits", "value_sum", "reward", "prior", "terminal")
FIELDS += ("exhausted", "span_start", "span_len", "num_nodes", "tokens")


def _snapshot(forest: Forest) -> dict:
    """Every field (used rows only: capacities may differ), copied."""
    out = {"num_nodes": forest.num_nodes.tolist(), "tokens": forest.tokens.tolist()}
    for name in FIELDS[:-2]:
        array = getattr(forest, name)
        out[name] = [array[t, : forest.num_nodes[t]].tolist() for t in range(forest.num_trees)]
    return out


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_round_is_the_separate_calls(case, seed):
    """`round` builds exactly the forest that expand, backup, mark_terminal and select_leaves build, with the
    same selections, children ids and token spans, round after round."""
    rule, backup, k, vl, max_depth, p_terminal, c = case
    rng = np.random.default_rng(100 + seed)
    num_trees, max_children = 5, 4
    calls = Forest(num_trees, capacity=2, max_children=max_children, backup=backup)
    one = Forest(num_trees, capacity=3, max_children=max_children, backup=backup)  # grows at other moments
    select = dict(k=k, c=c, rule=rule, virtual_loss=vl, max_depth=max_depth)
    tree_ids, node_ids = calls.select_leaves(k, c, rule, vl, max_depth)
    one_trees, one_nodes = one.select_leaves(k, c, rule, vl, max_depth)
    for round_index in range(40):
        assert tree_ids.tolist() == one_trees.tolist() and node_ids.tolist() == one_nodes.tolist()
        if not len(tree_ids):
            break
        trees, parents, priors, values, terminal = _trace_round(rng, tree_ids, node_ids, max_children, p_terminal)
        tokens = [rng.integers(0, 100, rng.integers(0, 4)).tolist() for _ in trees]
        # Now and then the generator cannot extend a leaf: it gets no children and is made terminal.
        dead_mask = [bool(rng.random() < 0.1) for _ in tree_ids]
        dead = ([t for t, d in zip(tree_ids, dead_mask) if d], [n for n, d in zip(node_ids, dead_mask) if d])
        keep = [not dead_mask[list(zip(tree_ids, node_ids)).index((t, p))] for t, p in zip(trees, parents)]
        new = [[x for x, kept in zip(column, keep) if kept] for column in (trees, parents, priors, values, terminal)]
        new_tokens = [x for x, kept in zip(tokens, keep) if kept]
        last = round_index == 39
        children = calls.expand(*new, tokens=new_tokens)
        calls.backup(new[0], children, new[3])
        calls.mark_terminal(*dead)
        tree_ids, node_ids = (np.zeros(0, np.int64),) * 2 if last else calls.select_leaves(k, c, rule, vl, max_depth)
        one_children, one_trees, one_nodes = one.round(
            Expansion(*new, tokens=new_tokens), dead=dead, **{**select, "k": 0 if last else k}
        )
        assert one_children.tolist() == children.tolist()
        assert _snapshot(one) == _snapshot(calls), round_index


def test_round_refuses_bad_input_and_changes_nothing():
    forest = Forest(2, capacity=2, max_children=2)
    children, trees, nodes = forest.round(Expansion([0, 0, 1], [0, 0, 0], [0.5, 0.5, 1.0], [0.1, 0.2, 0.3]), k=1)
    assert children.tolist() == [1, 2, 1] and forest.visits[0, :3].tolist() == [2, 1, 1]
    before = _snapshot(forest)
    bad = [
        (Expansion([2], [0], [1.0], [0.0]), None, IndexError, "tree_ids"),
        (Expansion([0], [7], [1.0], [0.0]), None, IndexError, "parent_ids"),
        (Expansion([0], [0], [1.0], [0.0]), None, ValueError, "max_children"),
        (Expansion([1, 1, 1], [1, 1, 1], [0.3] * 3, [0.0] * 3), None, ValueError, "max_children"),
        (Expansion([1], [1], [1.0], [0.0]), ([0], [9]), IndexError, "dead"),
        (Expansion([1], [1], [1.0, 2.0], [0.0]), None, ValueError, "priors"),
        (([1], [1], [1.0], [0.0], [True, False]), None, ValueError, "terminal"),
    ]
    for children, dead, error, match in bad:
        with pytest.raises(error, match=match):
            forest.round(children, dead=dead, k=1)
        assert _snapshot(forest) == before
    with pytest.raises(ValueError, match="rule"):
        forest.round(Expansion([1], [1], [1.0], [0.0]), rule="ucb")
    with pytest.raises(ValueError, match="k"):
        forest.round(Expansion([1], [1], [1.0], [0.0]), k=-1)
    assert _snapshot(forest) == before
    # k=0 selects nothing, and so does not mark leaves at the depth limit.
    _, trees, nodes = forest.round(Expansion([], [], [], []), k=0, max_depth=1)
    assert len(trees) == 0 and not forest.exhausted[:, :3].any()
    _, trees, nodes = forest.round(Expansion([], [], [], []), k=1, max_depth=1)
    assert len(trees) == 0 and forest.exhausted[:, 0].all()


def test_node_records_and_field_views():
    """Each node is one 64-byte record; the fields are read-only [T, C] views with the documented dtypes."""
    forest = Forest(3, capacity=5, max_children=2)
    assert forest._nodes.dtype.itemsize == 64 and forest._nodes.ctypes.data % 64 == 0
    dtypes = {"parent": np.int32, "num_children": np.int32, "depth": np.int32, "visits": np.int64}
    dtypes.update(value_sum=np.float64, reward=np.float64, prior=np.float64, terminal=np.bool_, exhausted=np.bool_)
    dtypes.update(span_start=np.int64, span_len=np.int32)
    for name, dtype in dtypes.items():
        view = getattr(forest, name)
        assert view.dtype == dtype and view.shape == (3, 5) and not view.flags.writeable, name
    assert forest.children.shape == (3, 5, 2) and forest.children.dtype == np.int32
    assert forest.parent[:, 1:].tolist() == [[-1] * 4] * 3 and forest.span_start.max() == -1  # unused slots
    forest.expand([2] * 2, [0] * 2, [0.5] * 2, [1.0, 2.0])
    assert (
        forest.capacity == 5 and forest.reward[2, 1:3].tolist() == [1.0, 2.0] and forest.prior[:, 0].tolist() == [1] * 3
    )
