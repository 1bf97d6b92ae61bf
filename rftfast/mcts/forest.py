"""Many search trees as arrays of node records, mutated only by compiled (numba) kernels.

A `Forest` holds `T` trees of up to `C` nodes each (`C` is the capacity, doubled when a tree outgrows it);
node 0 of every tree is its root. Every per-node field is exposed as a `[T, C]` array indexed `[tree, node]`,
and a node's id is its creation order within its tree, so two runs that make the same calls build the same ids.
The storage is one 64-byte record per node (a numpy structured array, `[T, C]`; the fields are views of it) and
the `children` table: a descent visits a child in one cache line, and the kernels take two arrays, not a dozen.

Fields (T trees, C node capacity, A = `max_children`, U = `tokens_used`):

    parent        int32   [T, C]     parent node id; NO_PARENT (-1) for roots and unused slots
    children      int32   [T, C, A]  child ids in creation order; NO_NODE (-1) past `num_children`
    num_children  int32   [T, C]     how many children a node has (0: a leaf)
    depth         int32   [T, C]     0 at the root
    visits        int64   [T, C]     backups through the node
    value_sum     float64 [T, C]     sum of the values backed up through the node
    reward        float64 [T, C]     the value the node was given when it was created
    prior         float64 [T, C]     the policy's probability of the node among its siblings (root: 1)
    terminal      bool    [T, C]     the node ends its answer: it is never expanded
    exhausted     bool    [T, C]     nothing below is left to select: terminal, cut by the depth limit, or
                                     every child exhausted
    span_start    int64   [T, C]     where the node's tokens start in `tokens` (NO_SPAN, -1: no tokens)
    span_len      int32   [T, C]     how many tokens the node adds to its parent's sequence
    num_nodes     int64   [T]        nodes in use per tree; rows at and past it are unused
    tokens        int32   [U]        the filled part of the token pool that holds every node's span

Rows past `num_nodes[t]` hold the defaults above (-1, 0, False) and mean nothing.

Values: the forest's `backup` mode says what a node's value Q is. "mean": `value_sum / visits` (AlphaZero,
and a value in the reward's own scale); "sum": `value_sum` itself (iTool's summed values, which favour
subtrees that collected more reward). Selection uses Q plus an exploration term; the rule is "uct" (iTool):

    Q + c · p · sqrt(ln N_parent / (n + 1))

or "puct" (AlphaZero):

    Q + c · p · sqrt(N_parent) / (1 + n)

with `p` the child's prior, `n` its visits and `N_parent` its parent's visits (ln of at least 1). In floating
point the term is `c * p * parent_factor(N_parent) * child_factor(n)`, left to right, with the factors
sqrt(ln N) and 1 / sqrt(n + 1) (uct) or sqrt(N) and 1 / (1 + n) (puct); `reference.py` computes the same
expression, so both give the same bits.

Virtual loss lives only inside one `select_leaves` call: each leaf picked adds one pending visit with value
`-virtual_loss` to every node on its path, so the next descent in the same tree is steered elsewhere; the
pending visits are taken back before the call returns, because the caller expands and backs up every selected
leaf before it selects again (the records' `pending` and `blocked` are that call's scratch, zero between
calls). A leaf picked once is not picked again in the same call.

Ties between children go to the first child (the lowest id), so selection is deterministic.

A search round's part in the forest can be one call, `round`: expand the round's children, back each up with
its own value, make the leaves the generator could not extend terminal, and select the next round's leaves, its
arguments checked once. It is exactly `expand`, `backup`, `mark_terminal`, `select_leaves` in that order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from numba import njit

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

RULES = {"uct": 0, "puct": 1}
BACKUPS = {"mean": 0, "sum": 1}
BEST_BY = {"visits": 0, "value": 1, "mean": 2, "reward": 3}
NO_DEPTH_LIMIT = 2**62
ROOT_INDEX = 0  # node 0 of every tree is its root
NO_PARENT = -1  # `parent` of a root and of unused slots: the end of every walk up the tree
NO_NODE = -1  # no child / nothing found (`children` past `num_children`, a failed selection)
NO_SPAN = -1  # `span_start` of a node that holds no tokens
ALL_FOUND = -1  # what a kernel that checks entries returns when every entry's node exists
# `_expand`'s and `_round`'s return codes (nothing is changed unless it returns EXPANDED)
EXPANDED, BAD_TREE, BAD_PARENT, EXHAUSTED_PARENT, TOO_MANY_CHILDREN, OUT_OF_CAPACITY = 0, -1, -2, -3, -4, -5
BAD_DEAD_LEAF = -6


# ---------------------------------------------------------------------------------------------------------------
# Kernels. `Forest` below is the only caller and checks shapes and dtypes.
# ---------------------------------------------------------------------------------------------------------------


@njit(cache=True, error_model="numpy", inline="always")
def _q(value_sum, visits, pending, virtual_loss, value_mode):
    """Q of a node with `pending` virtual visits, each worth `-virtual_loss`."""
    w = value_sum - virtual_loss * pending
    if value_mode == 1:
        return w
    n = visits + pending
    return w / n if n > 0 else 0.0


# The exploration term is c · p · parent_factor(N) · child_factor(n): for "uct" sqrt(ln max(N, 1)) and
# 1 / sqrt(n + 1), for "puct" sqrt(N) and 1 / (1 + n). Visit counts are mostly small, so both factors come from
# tables below _TABLE_SIZE (made with Python's math, bit for bit what the same expression gives inline): a log,
# a square root and a division less on the path of every descent step.
_TABLE_SIZE = 4096
_PARENT_FACTOR = np.array(
    [[math.sqrt(math.log(max(n, 1))) for n in range(_TABLE_SIZE)], [math.sqrt(n) for n in range(_TABLE_SIZE)]]
)
_CHILD_FACTOR = np.array(
    [[1.0 / math.sqrt(n + 1) for n in range(_TABLE_SIZE)], [1.0 / (1 + n) for n in range(_TABLE_SIZE)]]
)


@njit(cache=True, error_model="numpy", inline="always")
def _parent_factor(n_parent, rule):
    if n_parent < _TABLE_SIZE:
        return _PARENT_FACTOR[rule, n_parent]
    return math.sqrt(math.log(n_parent)) if rule == 0 else math.sqrt(n_parent)


@njit(cache=True, error_model="numpy", inline="always")
def _child_factor(n_child, rule):
    if n_child < _TABLE_SIZE:
        return _CHILD_FACTOR[rule, n_child]
    return 1.0 / math.sqrt(n_child + 1) if rule == 0 else 1.0 / (1 + n_child)


# One record per node: the fields of the module docstring but `children`, plus the selection scratch (`pending`,
# `blocked`). A node's record is one 64-byte cache line (the storage is aligned), with what a descent reads of a
# child first, so visiting a child is one line, and growing or backing up a node one write to it.
_NODE = np.dtype(
    {
        "names": [
            "visits",
            "value_sum",
            "prior",
            "pending",
            "num_children",
            "exhausted",
            "blocked",
            "terminal",
            "depth",
            "parent",
            "span_len",
            "reward",
            "span_start",
        ],
        "formats": ["i8", "f8", "f8", "i4", "i4", "?", "?", "?", "i4", "i4", "i4", "f8", "i8"],
        "offsets": [0, 8, 16, 24, 28, 32, 33, 34, 36, 40, 44, 48, 56],
        "itemsize": 64,
    }
)
_FIELDS = ("parent", "num_children", "depth", "visits", "value_sum", "reward", "prior", "terminal", "exhausted")
_FIELDS += ("span_start", "span_len")  # the public per-node fields, [T, C] views of the records
_UNUSED = np.zeros((), _NODE)  # what a slot past num_nodes holds
_UNUSED["parent"], _UNUSED["span_start"] = NO_PARENT, NO_SPAN
# Kernels take `nodes` (the records, [T, C]) and `children` ([T, C, A]); `nodes[t, i]` is node i's record,
# `nodes[t, i].visits` its field, read and written in place.


@njit(cache=True, error_model="numpy")
def _propagate_exhausted(nodes, children, t, node):
    """Mark `node` and its ancestors exhausted for as long as all their children are."""
    while node != NO_PARENT:
        rec = nodes[t, node]
        if rec.num_children == 0 or rec.exhausted:
            return
        for j in range(rec.num_children):
            if not nodes[t, children[t, node, j]].exhausted:
                return
        rec.exhausted = True
        node = rec.parent


@njit(cache=True, error_model="numpy", inline="always")
def _best_to_descend(nodes, children, t, node, c, rule, virtual_loss, value_mode):
    """The child of `node` a descent goes to (the highest score among those neither exhausted nor blocked), or
    NO_NODE when there is none."""
    rec = nodes[t, node]
    parent_factor = _parent_factor(rec.visits + rec.pending, rule)
    best = NO_NODE
    best_score = 0.0
    for j in range(rec.num_children):
        ch = children[t, node, j]
        child = nodes[t, ch]
        if child.exhausted or child.blocked:
            continue
        q = _q(child.value_sum, child.visits, child.pending, virtual_loss, value_mode)
        score = q + c * child.prior * parent_factor * _child_factor(child.visits + child.pending, rule)
        if best == NO_NODE or score > best_score:
            best = ch
            best_score = score
    return best


@njit(cache=True, error_model="numpy", inline="always")
def _next_selectable(nodes, t):
    """The first tree from `t` on whose root is neither exhausted nor blocked (the tree count if none)."""
    while t < nodes.shape[0]:
        root = nodes[t, ROOT_INDEX]
        if not root.exhausted and not root.blocked:
            return t
        t += 1
    return t


@njit(cache=True, error_model="numpy")
def _select_leaves(nodes, children, num_nodes, k, c, rule, virtual_loss, value_mode, max_depth, out_tree, out_node):
    """Up to `k` distinct leaves per tree; returns how many were written to `out_tree`/`out_node`.

    A picked leaf is blocked for the rest of the call, and so is each ancestor left with no selectable child.
    A descent can still meet a dead end (a leaf newly cut by the depth limit, next to blocked siblings): it
    blocks that node and starts again from the root; each restart blocks one more node, so a tree's loop ends.
    """
    if k == 1:
        return _select_one_each(
            nodes, children, num_nodes, c, rule, virtual_loss, value_mode, max_depth, out_tree, out_node
        )
    count = 0
    blocked_list = np.empty(max(1, num_nodes.max()), np.int64)  # nodes to unblock when the tree is done
    for t in range(num_nodes.shape[0]):
        n_blocked = 0
        first = count
        root = nodes[t, ROOT_INDEX]
        for pick in range(k):
            found = NO_NODE
            while found == NO_NODE and not root.exhausted and not root.blocked:
                node = ROOT_INDEX
                while True:
                    rec = nodes[t, node]
                    nc = rec.num_children
                    if nc == 0:
                        if rec.depth >= max_depth:  # cut by the depth limit, for good
                            rec.exhausted = True
                            _propagate_exhausted(nodes, children, t, rec.parent)
                        else:
                            found = node
                        break
                    best = _best_to_descend(nodes, children, t, node, c, rule, virtual_loss, value_mode)
                    if best == NO_NODE:
                        rec.blocked = True
                        blocked_list[n_blocked] = node
                        n_blocked += 1
                        break
                    node = best
            if found == NO_NODE:
                break
            out_tree[count] = t
            out_node[count] = found
            count += 1
            if pick == k - 1:
                break  # no descent follows in this tree: no need to block or weigh down the path
            # Block the leaf, and each ancestor left with nothing to select, so later descents skip them.
            node = found
            while node != NO_PARENT:
                rec = nodes[t, node]
                for j in range(rec.num_children):
                    child = nodes[t, children[t, node, j]]
                    if not child.exhausted and not child.blocked:
                        break
                else:
                    rec.blocked = True
                    blocked_list[n_blocked] = node
                    n_blocked += 1
                    node = rec.parent
                    continue
                break
            node = found
            while node != NO_PARENT:
                nodes[t, node].pending += 1
                node = nodes[t, node].parent
        for i in range(first, min(count, first + k - 1)):  # take the virtual loss back
            node = out_node[i]
            while node != NO_PARENT:
                nodes[t, node].pending -= 1
                node = nodes[t, node].parent
        for i in range(n_blocked):
            nodes[t, blocked_list[i]].blocked = False
    return count


LANES = 4  # descents `_select_one_each` keeps in flight at once


@njit(cache=True, error_model="numpy")
def _select_one_each(nodes, children, num_nodes, c, rule, virtual_loss, value_mode, max_depth, out_tree, out_node):
    """`_select_leaves` with k = 1 (one leaf per tree, the search's usual round), the same leaves, with the
    descents of LANES trees interleaved a level at a time. A descent is a chain of dependent loads (each level
    reads the children of the node chosen at the level before), so one descent at a time leaves the CPU
    waiting on memory; the trees are independent, so their loads can wait together. Within a tree the
    descents (restarts after a dead end) run in the original order; blocked nodes are unblocked at the end,
    which is the same as after each tree, since no tree reads another's nodes."""
    n_trees = num_nodes.shape[0]
    found = np.full(n_trees, NO_NODE, np.int64)
    blocked_tree = np.empty(max(1, num_nodes.sum()), np.int64)  # a node is blocked at most once a call
    blocked_node = np.empty(max(1, num_nodes.sum()), np.int64)
    n_blocked = 0
    lane_tree = np.full(LANES, -1, np.int64)
    lane_node = np.zeros(LANES, np.int64)
    next_tree = 0
    active = 0
    for lane in range(LANES):  # each lane takes the next tree that has something to select
        next_tree = _next_selectable(nodes, next_tree)
        if next_tree < n_trees:
            lane_tree[lane], lane_node[lane] = next_tree, ROOT_INDEX
            next_tree += 1
            active += 1
    while active > 0:
        for lane in range(LANES):
            t = lane_tree[lane]
            if t < 0:
                continue
            node = lane_node[lane]
            rec = nodes[t, node]
            nc = rec.num_children
            restart = False
            done = False
            if nc == 0:
                if rec.depth >= max_depth:  # cut by the depth limit, for good
                    rec.exhausted = True
                    _propagate_exhausted(nodes, children, t, rec.parent)
                    restart = True
                else:
                    found[t] = node
                    done = True
            else:
                best = _best_to_descend(nodes, children, t, node, c, rule, virtual_loss, value_mode)
                if best == NO_NODE:
                    rec.blocked = True
                    blocked_tree[n_blocked] = t
                    blocked_node[n_blocked] = node
                    n_blocked += 1
                    restart = True
                else:
                    lane_node[lane] = best
            if restart:
                root = nodes[t, ROOT_INDEX]
                if root.exhausted or root.blocked:
                    done = True
                else:
                    lane_node[lane] = ROOT_INDEX
            if done:
                next_tree = _next_selectable(nodes, next_tree)
                if next_tree < n_trees:
                    lane_tree[lane], lane_node[lane] = next_tree, ROOT_INDEX
                    next_tree += 1
                else:
                    lane_tree[lane] = -1
                    active -= 1
    for i in range(n_blocked):
        nodes[blocked_tree[i], blocked_node[i]].blocked = False
    count = 0
    for t in range(n_trees):
        if found[t] != NO_NODE:
            out_tree[count] = t
            out_node[count] = found[t]
            count += 1
    return count


@njit(cache=True, error_model="numpy")
def _expand(nodes, children, num_nodes, tree_ids, parent_ids, priors, values, terminal_in, out_child):
    """Add one child per entry; returns EXPANDED, or (nothing changed) the code of the first problem found:
    BAD_TREE, BAD_PARENT, EXHAUSTED_PARENT, TOO_MANY_CHILDREN or OUT_OF_CAPACITY."""
    n_trees = num_nodes.shape[0]
    capacity = nodes.shape[1]
    max_children = children.shape[2]
    m = tree_ids.shape[0]
    for i in range(m):
        t = tree_ids[i]
        if t < 0 or t >= n_trees:
            return BAD_TREE
        p = parent_ids[i]
        if p < 0 or p >= num_nodes[t]:
            return BAD_PARENT
        if nodes[t, p].exhausted:
            return EXHAUSTED_PARENT
    # Count each parent's new children and each tree's new nodes in place, check, and put the counts back.
    overflow = EXPANDED
    for i in range(m):
        nodes[tree_ids[i], parent_ids[i]].num_children += 1
        num_nodes[tree_ids[i]] += 1
    for i in range(m):
        if nodes[tree_ids[i], parent_ids[i]].num_children > max_children:
            overflow = TOO_MANY_CHILDREN
        elif num_nodes[tree_ids[i]] > capacity and overflow == EXPANDED:
            overflow = OUT_OF_CAPACITY
    for i in range(m):
        nodes[tree_ids[i], parent_ids[i]].num_children -= 1
        num_nodes[tree_ids[i]] -= 1
    if overflow != EXPANDED:
        return overflow
    for i in range(m):
        t = tree_ids[i]
        p = parent_ids[i]
        ch = num_nodes[t]
        num_nodes[t] += 1
        up = nodes[t, p]
        rec = nodes[t, ch]
        rec.parent = p
        rec.depth = up.depth + 1
        rec.visits = 0
        rec.value_sum = 0.0
        rec.reward = values[i]
        rec.prior = priors[i]
        rec.terminal = terminal_in[i]
        rec.exhausted = terminal_in[i]
        rec.num_children = 0
        rec.span_start = NO_SPAN
        rec.span_len = 0
        children[t, p, up.num_children] = ch
        up.num_children += 1
        out_child[i] = ch
    for i in range(m):
        if terminal_in[i]:
            _propagate_exhausted(nodes, children, tree_ids[i], parent_ids[i])
    return EXPANDED


@njit(cache=True, error_model="numpy")
def _check_nodes(tree_ids, node_ids, num_nodes):
    for i in range(tree_ids.shape[0]):
        t = tree_ids[i]
        if t < 0 or t >= num_nodes.shape[0] or node_ids[i] < 0 or node_ids[i] >= num_nodes[t]:
            return i
    return ALL_FOUND


@njit(cache=True, error_model="numpy")
def _add_backups(nodes, tree_ids, node_ids, values):
    """Add one visit and `values[i]` to node `node_ids[i]` and every ancestor, entries in order (all must exist).

    Consecutive entries with the same parent (siblings, as `expand` makes them) share one walk up the tree:
    each ancestor still adds their values one by one in entry order, so the sums are bit for bit those of one
    walk per entry.
    """
    m = tree_ids.shape[0]
    i = 0
    while i < m:
        t = tree_ids[i]
        p = nodes[t, node_ids[i]].parent
        j = i + 1
        while j < m and tree_ids[j] == t and nodes[t, node_ids[j]].parent == p:
            j += 1
        for e in range(i, j):
            rec = nodes[t, node_ids[e]]
            rec.visits += 1
            rec.value_sum += values[e]
        node = p
        while node != NO_PARENT:
            rec = nodes[t, node]
            rec.visits += j - i
            for e in range(i, j):
                rec.value_sum += values[e]
            node = rec.parent
        i = j


@njit(cache=True, error_model="numpy")
def _backup(nodes, num_nodes, tree_ids, node_ids, values):
    """`_add_backups` after checking every entry; returns ALL_FOUND, or (changing nothing) the first entry whose
    node does not exist."""
    bad = _check_nodes(tree_ids, node_ids, num_nodes)
    if bad == ALL_FOUND:
        _add_backups(nodes, tree_ids, node_ids, values)
    return bad


@njit(cache=True, error_model="numpy")
def _mark_terminal(nodes, children, tree_ids, node_ids):
    for i in range(tree_ids.shape[0]):
        t = tree_ids[i]
        rec = nodes[t, node_ids[i]]
        rec.terminal = True
        if not rec.exhausted:
            rec.exhausted = True
            _propagate_exhausted(nodes, children, t, rec.parent)


@njit(cache=True, error_model="numpy")
def _round(nodes, children, num_nodes, new, dead_trees, dead_nodes, select, out):
    """One search round's bookkeeping: `_expand` the `new` children (tree_ids, parent_ids, priors, values,
    terminal), `_add_backups` of each with its own value, `_mark_terminal` of the dead leaves, then
    `_select_leaves` with `select` = (k, c, rule, virtual_loss, value_mode, max_depth), none if k is 0. `out` is
    (children, selected trees, selected nodes).

    Returns (EXPANDED, leaves selected), or, changing nothing, (BAD_DEAD_LEAF, the first dead entry whose node
    does not exist) or (`_expand`'s code, 0)."""
    tree_ids, parent_ids, priors, values, terminal_in = new
    out_child, out_tree, out_node = out
    bad = _check_nodes(dead_trees, dead_nodes, num_nodes)
    if bad != ALL_FOUND:
        return BAD_DEAD_LEAF, bad
    code = _expand(nodes, children, num_nodes, tree_ids, parent_ids, priors, values, terminal_in, out_child)
    if code != EXPANDED:
        return code, 0
    _add_backups(nodes, tree_ids, out_child, values)
    _mark_terminal(nodes, children, dead_trees, dead_nodes)
    k, c, rule, virtual_loss, value_mode, max_depth = select
    if k == 0:
        return EXPANDED, 0
    n = _select_leaves(nodes, children, num_nodes, k, c, rule, virtual_loss, value_mode, max_depth, out_tree, out_node)
    return EXPANDED, n


@njit(cache=True, error_model="numpy")
def _best_child(nodes, children, tree_ids, node_ids, by, value_mode, out):
    """Per entry, the child with the most visits / highest Q / highest mean / highest reward; NO_NODE for a leaf."""
    for i in range(tree_ids.shape[0]):
        t = tree_ids[i]
        node = node_ids[i]
        best = NO_NODE
        best_key = 0.0
        for j in range(nodes[t, node].num_children):
            ch = children[t, node, j]
            child = nodes[t, ch]
            if by == 0:
                key = float(child.visits)
            elif by == 1:
                key = _q(child.value_sum, child.visits, 0, 0.0, value_mode)
            elif by == 2:
                key = _q(child.value_sum, child.visits, 0, 0.0, 0)
            else:
                key = child.reward
            if best == NO_NODE or key > best_key:
                best = ch
                best_key = key
        out[i] = best


# ---------------------------------------------------------------------------------------------------------------
# The forest
# ---------------------------------------------------------------------------------------------------------------

_EMPTY_IDS = np.zeros(0, np.int64)


def _records(shape: tuple[int, int]) -> np.ndarray:
    """Unused node records of `shape`, each starting a cache line."""
    size = shape[0] * shape[1] * _NODE.itemsize
    raw = np.empty(size + 64, np.uint8)
    start = -raw.ctypes.data % 64
    out = raw[start : start + size].view(_NODE).reshape(shape)
    out[...] = _UNUSED
    return out


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def _ids(values, name: str) -> np.ndarray:
    out = np.ascontiguousarray(values, dtype=np.int64)
    if out.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of ids, got shape {out.shape}")
    return out


def _floats(values, name: str, n: int) -> np.ndarray:
    out = np.ascontiguousarray(values, dtype=np.float64)
    if out.shape != (n,):
        raise ValueError(f"{name}: expected {n} values, got shape {out.shape}")
    return out


class Expansion(NamedTuple):
    """New children as `Forest.expand` takes them (its docstring says what each is), for `Forest.round`."""

    tree_ids: ArrayLike
    parent_ids: ArrayLike
    priors: ArrayLike
    values: ArrayLike
    terminal: ArrayLike | None = None
    tokens: Sequence[Sequence[int]] | None = None


class Forest:
    """`num_trees` search trees, one node record per `[tree, node]` (see the module docstring for every field).

    `capacity` is the initial node capacity per tree (doubled as needed); `max_children` bounds a node's
    arity; `backup` ("mean" or "sum") says what a node's value Q is. The fields are exposed as read-only
    `[T, C]` views; only the methods below change them. An attribute is a view of the current storage: growing
    reallocates, so read it again after `expand` rather than keeping it.
    """

    def __init__(self, num_trees: int, capacity: int = 64, max_children: int = 8, *, backup: str = "mean") -> None:
        if num_trees < 1 or capacity < 1 or max_children < 1:
            raise ValueError(
                f"num_trees, capacity and max_children must be >= 1, got {num_trees}, {capacity}, {max_children}"
            )
        if backup not in BACKUPS:
            raise ValueError(f"backup: expected one of {sorted(BACKUPS)}, got {backup!r}")
        self.num_trees, self.max_children, self.backup_mode = int(num_trees), int(max_children), backup
        self._value_mode = BACKUPS[backup]
        self._capacity = 0
        self._nodes = _records((self.num_trees, 0))
        self._children = np.zeros((self.num_trees, 0, self.max_children), np.int32)
        self._grow(int(capacity))
        self._num_nodes = np.ones(self.num_trees, np.int64)
        self._nodes["prior"][:, ROOT_INDEX] = 1.0
        self._tokens = np.zeros(max(64, capacity), np.int32)
        self.tokens_used = 0

    # -- storage -------------------------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    def _grow(self, capacity: int) -> None:
        """Reallocate the node records and child table at `capacity` nodes per tree, keeping the contents."""
        old, t = self._capacity, self.num_trees
        nodes = _records((t, capacity))
        nodes[:, :old] = self._nodes
        children = np.full((t, capacity, self.max_children), NO_NODE, np.int32)
        children[:, :old] = self._children
        self._nodes, self._children, self._capacity = nodes, children, capacity

    def _reserve(self, tree_ids: np.ndarray) -> None:
        needed = int((self._num_nodes + np.bincount(tree_ids, minlength=self.num_trees)).max())
        if needed > self._capacity:
            capacity = self._capacity
            while capacity < needed:
                capacity *= 2
            self._grow(capacity)

    def _store_tokens(self, token_lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Append each token list to the pool; returns their starts and lengths."""
        lengths = np.fromiter((len(ids) for ids in token_lists), np.int64, len(token_lists))
        total = int(lengths.sum())
        if self.tokens_used + total > self._tokens.size:
            size = self._tokens.size
            while size < self.tokens_used + total:
                size *= 2
            self._tokens = np.concatenate([self._tokens, np.zeros(size - self._tokens.size, np.int32)])
        starts = self.tokens_used + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        if total:
            self._tokens[self.tokens_used : self.tokens_used + total] = np.concatenate(
                [np.asarray(ids, np.int32) for ids in token_lists if len(ids)]
            )
        self.tokens_used += total
        return starts, lengths

    # -- read-only views -------------------------------------------------------------------------------------------

    @property
    def num_nodes(self) -> np.ndarray:
        return _read_only(self._num_nodes)

    @property
    def tokens(self) -> np.ndarray:
        return _read_only(self._tokens[: self.tokens_used])

    # -- the search operations ----------------------------------------------------------------------------------

    def select_leaves(
        self, k: int = 1, c: float = 1.0, rule: str = "uct", virtual_loss: float = 1.0, max_depth: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Up to `k` distinct leaves per tree, tree by tree: `(tree_ids, node_ids)`, both int64 `[L]`.

        A leaf at `depth >= max_depth` is not selected: it is marked exhausted (for good) and the descent
        starts again. Trees whose root is exhausted yield nothing.
        """
        if k < 1:
            raise ValueError(f"k: expected >= 1, got {k}")
        select = self._selection(k, c, rule, virtual_loss, max_depth)
        out_tree, out_node = np.empty(self.num_trees * k, np.int64), np.empty(self.num_trees * k, np.int64)
        n = _select_leaves(self._nodes, self._children, self._num_nodes, *select, out_tree, out_node)
        return out_tree[:n], out_node[:n]

    def expand(
        self,
        tree_ids: ArrayLike,
        parent_ids: ArrayLike,
        priors: ArrayLike,
        values: ArrayLike,
        terminal: ArrayLike | None = None,
        tokens: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray:
        """Add a child under `parent_ids[i]` of tree `tree_ids[i]` for each i; returns the child ids, int64 `[M]`.

        Each child gets `priors[i]`, its own value `values[i]` (stored as `reward`; visits stay 0 until
        `backup`), `terminal[i]` (default False) and, optionally, the token span `tokens[i]` it adds.
        Children of one parent may come in one call or several; a parent takes at most `max_children`.
        Raises (changing nothing) for unknown ids, an exhausted parent, or too many children.
        """
        new = self._new_children(tree_ids, parent_ids, priors, values, terminal, tokens)
        out = np.empty(new[0].shape[0], np.int64)
        self._run_growing(new[0], lambda: (_expand(self._nodes, self._children, self._num_nodes, *new, out), 0))
        if tokens is not None:
            self.set_spans(new[0], out, tokens)
        return out

    def backup(self, tree_ids: ArrayLike, node_ids: ArrayLike, values: ArrayLike) -> None:
        """Add one visit and `values[i]` to `node_ids[i]` and each of its ancestors, in entry order."""
        tree_ids, node_ids = _ids(tree_ids, "tree_ids"), _ids(node_ids, "node_ids")
        values = _floats(values, "values", tree_ids.shape[0])
        if node_ids.shape != tree_ids.shape:
            raise ValueError(f"node_ids: expected {tree_ids.shape[0]} ids, got {node_ids.shape[0]}")
        bad = _backup(self._nodes, self._num_nodes, tree_ids, node_ids, values)
        if bad != ALL_FOUND:
            raise IndexError(f"entry {bad}: node {node_ids[bad]} of tree {tree_ids[bad]} does not exist")

    def round(
        self,
        children: Expansion | tuple,
        *,
        dead: tuple[ArrayLike, ArrayLike] | None = None,
        k: int = 1,
        c: float = 1.0,
        rule: str = "uct",
        virtual_loss: float = 1.0,
        max_depth: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The forest's part of a search round in one call, its arguments checked once.

        `children` are the round's new children as `expand` takes them, `Expansion(tree_ids, parent_ids, priors,
        values, terminal, tokens)` or the same as a plain tuple. Exactly ``ids = expand(*children)``, then
        ``backup(tree_ids, ids, values)`` (each new child backs up its own value), then ``mark_terminal(*dead)``
        (`dead`: `(tree_ids, node_ids)` of leaves the generator could not extend), then ``select_leaves(k, c,
        rule, virtual_loss, max_depth)`` for the next round (none if `k` is 0). Returns `(ids, next_tree_ids,
        next_node_ids)`, all int64. Raises, changing nothing, where `expand` would, or for a dead leaf that does
        not exist.
        """
        if k < 0:
            raise ValueError(f"k: expected >= 0, got {k}")
        select = self._selection(k, c, rule, virtual_loss, max_depth)
        children = Expansion(*children)
        tokens = children.tokens
        new = self._new_children(*children)
        dead_trees, dead_nodes = (_EMPTY_IDS, _EMPTY_IDS) if dead is None else self._node_pairs(*dead, "dead")
        out = (
            np.empty(new[0].shape[0], np.int64),
            np.empty(self.num_trees * k, np.int64),
            np.empty(self.num_trees * k, np.int64),
        )
        _, n = self._run_growing(
            new[0],
            lambda: _round(self._nodes, self._children, self._num_nodes, new, dead_trees, dead_nodes, select, out),
        )
        if tokens is not None and len(tokens):
            self.set_spans(new[0], out[0], tokens)
        return out[0], out[1][:n], out[2][:n]

    def best_child(self, tree_ids: ArrayLike, node_ids: ArrayLike, by: str = "visits") -> np.ndarray:
        """The child with the most visits (`by="visits"`), highest Q ("value"), mean value ("mean") or own
        reward ("reward"); first child on ties; NO_NODE (-1) for a leaf. int64 `[M]`."""
        if by not in BEST_BY:
            raise ValueError(f"by: expected one of {sorted(BEST_BY)}, got {by!r}")
        tree_ids, node_ids = self._checked_nodes(tree_ids, node_ids)
        out = np.empty(tree_ids.shape[0], np.int64)
        _best_child(self._nodes, self._children, tree_ids, node_ids, BEST_BY[by], self._value_mode, out)
        return out

    def mark_terminal(self, tree_ids: ArrayLike, node_ids: ArrayLike) -> None:
        """Make nodes terminal (never expanded, never selected), e.g. leaves the generator could not extend."""
        tree_ids, node_ids = self._checked_nodes(tree_ids, node_ids)
        _mark_terminal(self._nodes, self._children, tree_ids, node_ids)

    def set_spans(self, tree_ids: ArrayLike, node_ids: ArrayLike, token_lists: Sequence[Sequence[int]]) -> None:
        """Record the tokens each node adds to its parent's sequence (appended to the token pool)."""
        tree_ids, node_ids = self._checked_nodes(tree_ids, node_ids)
        if len(token_lists) != tree_ids.shape[0]:
            raise ValueError(f"token_lists: expected {tree_ids.shape[0]} lists, got {len(token_lists)}")
        starts, lengths = self._store_tokens(token_lists)
        self._nodes["span_start"][tree_ids, node_ids] = np.where(lengths > 0, starts, NO_SPAN)
        self._nodes["span_len"][tree_ids, node_ids] = lengths

    # -- argument checks shared by the operations ------------------------------------------------------------------

    def _checked_nodes(self, tree_ids, node_ids) -> tuple[np.ndarray, np.ndarray]:
        tree_ids, node_ids = self._node_pairs(tree_ids, node_ids)
        bad = _check_nodes(tree_ids, node_ids, self._num_nodes)
        if bad != ALL_FOUND:
            raise IndexError(f"entry {bad}: node {node_ids[bad]} of tree {tree_ids[bad]} does not exist")
        return tree_ids, node_ids

    @staticmethod
    def _node_pairs(tree_ids, node_ids, where: str = "") -> tuple[np.ndarray, np.ndarray]:
        """(tree ids, node ids) as int64 arrays of one length; not checked against the forest."""
        prefix = f"{where}: " if where else ""
        tree_ids, node_ids = _ids(tree_ids, prefix + "tree_ids"), _ids(node_ids, prefix + "node_ids")
        if node_ids.shape != tree_ids.shape:
            raise ValueError(f"{prefix}node_ids: expected {tree_ids.shape[0]} ids, got {node_ids.shape[0]}")
        return tree_ids, node_ids

    def _selection(self, k: int, c: float, rule: str, virtual_loss: float, max_depth: int | None) -> tuple:
        """`_select_leaves`' arguments after k: (k, c, rule, virtual_loss, value_mode, max_depth)."""
        if rule not in RULES:
            raise ValueError(f"rule: expected one of {sorted(RULES)}, got {rule!r}")
        depth = NO_DEPTH_LIMIT if max_depth is None else int(max_depth)
        return int(k), float(c), RULES[rule], float(virtual_loss), self._value_mode, depth

    @staticmethod
    def _new_children(tree_ids, parent_ids, priors, values, terminal, tokens) -> tuple[np.ndarray, ...]:
        """`expand`'s arguments as the kernels take them: (tree_ids, parent_ids, priors, values, terminal)."""
        tree_ids, parent_ids = _ids(tree_ids, "tree_ids"), _ids(parent_ids, "parent_ids")
        m = tree_ids.shape[0]
        if parent_ids.shape[0] != m:
            raise ValueError(f"parent_ids: expected {m} ids, got {parent_ids.shape[0]}")
        priors, values = _floats(priors, "priors", m), _floats(values, "values", m)
        terminal = np.zeros(m, np.bool_) if terminal is None else np.ascontiguousarray(terminal, dtype=np.bool_)
        if terminal.shape != (m,):
            raise ValueError(f"terminal: expected {m} flags, got shape {terminal.shape}")
        if tokens is not None and len(tokens) != m:
            raise ValueError(f"tokens: expected {m} token lists, got {len(tokens)}")
        return tree_ids, parent_ids, priors, values, terminal

    def _run_growing(self, tree_ids: np.ndarray, kernel) -> tuple[int, int]:
        """Run `kernel()` (an expanding kernel returning (code, value)), doubling the capacity while some tree is
        full; returns (code, value), or raises for the code of a refused call (nothing was changed)."""
        code, value = kernel()
        while code == OUT_OF_CAPACITY:
            self._reserve(tree_ids)
            code, value = kernel()
        if code == BAD_TREE:
            raise IndexError(f"tree_ids: expected ids in [0, {self.num_trees})")
        if code == BAD_PARENT:
            raise IndexError("parent_ids: a parent id is not a node of its tree")
        if code == EXHAUSTED_PARENT:
            raise ValueError("parent_ids: cannot expand an exhausted node (terminal, or nothing left below it)")
        if code == TOO_MANY_CHILDREN:
            raise ValueError(f"expand: a parent would have more than max_children={self.max_children} children")
        if code == BAD_DEAD_LEAF:
            raise IndexError(f"dead: entry {value} is not a node of its tree")
        return code, value

    # -- reading single trees (Python speed; for pair extraction and tests) ---------------------------------------

    def q_values(self) -> np.ndarray:
        """Q of every node under the forest's backup mode, float64 `[T, C]` (0 for unvisited nodes)."""
        value_sum, visits = self._nodes["value_sum"], self._nodes["visits"]
        if self._value_mode == 1:
            return value_sum.copy()
        return np.divide(value_sum, visits, out=np.zeros(value_sum.shape), where=visits > 0)

    def children_of(self, tree: int, node: int) -> np.ndarray:
        return self._children[tree, node, : self._nodes[tree, node]["num_children"]].astype(np.int64)

    def path(self, tree: int, node: int) -> list[int]:
        """Node ids from the root to `node`, both included."""
        parent = self._nodes["parent"][tree]
        out = [int(node)]
        while parent[out[-1]] != NO_PARENT:
            out.append(int(parent[out[-1]]))
        return out[::-1]

    def span(self, tree: int, node: int) -> np.ndarray:
        """The tokens `node` adds to its parent's sequence, int32 `[span_len]`."""
        rec = self._nodes[tree, node]
        start, length = rec["span_start"], rec["span_len"]
        return self._tokens[start : start + length] if length else np.zeros(0, np.int32)

    def path_tokens(self, tree: int, node: int) -> np.ndarray:
        """The tokens of every node from the root to `node`, concatenated, int32."""
        spans = [self.span(tree, n) for n in self.path(tree, node)]
        return np.concatenate(spans) if spans else np.zeros(0, np.int32)


def _field_view(name: str) -> property:
    return property(lambda self: _read_only(self._nodes[name]), doc=f"`{name}`, read-only (module docstring: shape)")


# The per-node fields as read-only attributes: `forest.visits[t, node]`, `forest.children[t, node, j]`, ...
for _name in _FIELDS:
    setattr(Forest, _name, _field_view(_name))
del _name
Forest.children = property(lambda self: _read_only(self._children), doc="`children`, read-only (module docstring)")
