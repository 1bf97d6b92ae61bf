"""Many search trees as one struct of arrays, mutated only by compiled (numba) kernels.

A `Forest` holds `T` trees of up to `C` nodes each (`C` is the capacity, doubled when a tree outgrows it);
node 0 of every tree is its root. Every per-node field is a `[T, C]` array indexed `[tree, node]`, and a
node's id is its creation order within its tree, so two runs that make the same calls build the same ids.

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
leaf before it selects again (`pending [T, C]` and `blocked [T, C]` are that call's scratch, zero between
calls). A leaf picked once is not picked again in the same call.

Ties between children go to the first child (the lowest id), so selection is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

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
# `_expand`'s return codes (nothing is changed unless it returns EXPANDED)
EXPANDED, BAD_TREE, BAD_PARENT, EXHAUSTED_PARENT, TOO_MANY_CHILDREN, OUT_OF_CAPACITY = 0, -1, -2, -3, -4, -5


# ---------------------------------------------------------------------------------------------------------------
# Kernels. They take the arrays they touch; `Forest` below is the only caller and checks shapes and dtypes.
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


@njit(cache=True, error_model="numpy")
def _propagate_exhausted(parent, children, num_children, exhausted, t, node):
    """Mark `node` and its ancestors exhausted for as long as all their children are."""
    while node != NO_PARENT:
        nc = num_children[t, node]
        if nc == 0 or exhausted[t, node]:
            return
        for j in range(nc):
            if not exhausted[t, children[t, node, j]]:
                return
        exhausted[t, node] = True
        node = parent[t, node]


@njit(cache=True, error_model="numpy")
def _select_leaves(
    parent,
    children,
    num_children,
    depth,
    visits,
    value_sum,
    prior,
    exhausted,
    pending,
    blocked,
    num_nodes,
    k,
    c,
    rule,
    virtual_loss,
    value_mode,
    max_depth,
    out_tree,
    out_node,
):
    """Up to `k` distinct leaves per tree; returns how many were written to `out_tree`/`out_node`.

    A picked leaf is blocked for the rest of the call, and so is each ancestor left with no selectable child.
    A descent can still meet a dead end (a leaf newly cut by the depth limit, next to blocked siblings): it
    blocks that node and starts again from the root; each restart blocks one more node, so a tree's loop ends.
    """
    count = 0
    blocked_list = np.empty(max(1, num_nodes.max()), np.int64)  # nodes to unblock when the tree is done
    for t in range(num_nodes.shape[0]):
        n_blocked = 0
        first = count
        for pick in range(k):
            found = NO_NODE
            while found == NO_NODE and not exhausted[t, ROOT_INDEX] and not blocked[t, ROOT_INDEX]:
                node = ROOT_INDEX
                while True:
                    nc = num_children[t, node]
                    if nc == 0:
                        if depth[t, node] >= max_depth:  # cut by the depth limit, for good
                            exhausted[t, node] = True
                            _propagate_exhausted(parent, children, num_children, exhausted, t, parent[t, node])
                        else:
                            found = node
                        break
                    parent_factor = _parent_factor(visits[t, node] + pending[t, node], rule)
                    best = NO_NODE
                    best_score = 0.0
                    for j in range(nc):
                        ch = children[t, node, j]
                        if exhausted[t, ch] or blocked[t, ch]:
                            continue
                        q = _q(value_sum[t, ch], visits[t, ch], pending[t, ch], virtual_loss, value_mode)
                        s = q + c * prior[t, ch] * parent_factor * _child_factor(visits[t, ch] + pending[t, ch], rule)
                        if best == NO_NODE or s > best_score:
                            best = ch
                            best_score = s
                    if best == NO_NODE:
                        blocked[t, node] = True
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
                nc = num_children[t, node]
                for j in range(nc):
                    ch = children[t, node, j]
                    if not exhausted[t, ch] and not blocked[t, ch]:
                        break
                else:
                    blocked[t, node] = True
                    blocked_list[n_blocked] = node
                    n_blocked += 1
                    node = parent[t, node]
                    continue
                break
            node = found
            while node != NO_PARENT:
                pending[t, node] += 1
                node = parent[t, node]
        for i in range(first, min(count, first + k - 1)):  # take the virtual loss back
            node = out_node[i]
            while node != NO_PARENT:
                pending[t, node] -= 1
                node = parent[t, node]
        for i in range(n_blocked):
            blocked[t, blocked_list[i]] = False
    return count


@njit(cache=True, error_model="numpy")
def _expand(
    tree_ids,
    parent_ids,
    priors,
    values,
    terminal_in,
    parent,
    children,
    num_children,
    depth,
    visits,
    value_sum,
    reward,
    prior,
    terminal,
    exhausted,
    span_start,
    span_len,
    num_nodes,
    out_child,
):
    """Add one child per entry; returns EXPANDED, or (nothing changed) the code of the first problem found:
    BAD_TREE, BAD_PARENT, EXHAUSTED_PARENT, TOO_MANY_CHILDREN or OUT_OF_CAPACITY."""
    n_trees = num_nodes.shape[0]
    capacity = parent.shape[1]
    max_children = children.shape[2]
    for i in range(tree_ids.shape[0]):
        t = tree_ids[i]
        if t < 0 or t >= n_trees:
            return BAD_TREE
        p = parent_ids[i]
        if p < 0 or p >= num_nodes[t]:
            return BAD_PARENT
        if exhausted[t, p]:
            return EXHAUSTED_PARENT
    # Count each parent's new children and each tree's new nodes in place, check, and put the counts back.
    overflow = EXPANDED
    for i in range(tree_ids.shape[0]):
        num_children[tree_ids[i], parent_ids[i]] += 1
        num_nodes[tree_ids[i]] += 1
    for i in range(tree_ids.shape[0]):
        if num_children[tree_ids[i], parent_ids[i]] > max_children:
            overflow = TOO_MANY_CHILDREN
        elif num_nodes[tree_ids[i]] > capacity and overflow == EXPANDED:
            overflow = OUT_OF_CAPACITY
    for i in range(tree_ids.shape[0]):
        num_children[tree_ids[i], parent_ids[i]] -= 1
        num_nodes[tree_ids[i]] -= 1
    if overflow != EXPANDED:
        return overflow
    for i in range(tree_ids.shape[0]):
        t = tree_ids[i]
        p = parent_ids[i]
        ch = num_nodes[t]
        num_nodes[t] += 1
        parent[t, ch] = p
        depth[t, ch] = depth[t, p] + 1
        visits[t, ch] = 0
        value_sum[t, ch] = 0.0
        reward[t, ch] = values[i]
        prior[t, ch] = priors[i]
        terminal[t, ch] = terminal_in[i]
        exhausted[t, ch] = terminal_in[i]
        num_children[t, ch] = 0
        span_start[t, ch] = NO_SPAN
        span_len[t, ch] = 0
        children[t, p, num_children[t, p]] = ch
        num_children[t, p] += 1
        out_child[i] = ch
    for i in range(tree_ids.shape[0]):
        if terminal_in[i]:
            _propagate_exhausted(parent, children, num_children, exhausted, tree_ids[i], parent_ids[i])
    return EXPANDED


@njit(cache=True, error_model="numpy")
def _check_nodes(tree_ids, node_ids, num_nodes):
    for i in range(tree_ids.shape[0]):
        t = tree_ids[i]
        if t < 0 or t >= num_nodes.shape[0] or node_ids[i] < 0 or node_ids[i] >= num_nodes[t]:
            return i
    return ALL_FOUND


@njit(cache=True, error_model="numpy")
def _backup(tree_ids, node_ids, values, parent, visits, value_sum, num_nodes):
    """Add one visit and `values[i]` to node `node_ids[i]` and every ancestor, entries in order.

    Consecutive entries with the same parent (siblings, as `expand` makes them) share one walk up the tree:
    each ancestor still adds their values one by one in entry order, so the sums are bit for bit those of one
    walk per entry. Returns ALL_FOUND, or (changing nothing) the first entry whose node does not exist.
    """
    bad = _check_nodes(tree_ids, node_ids, num_nodes)
    if bad != ALL_FOUND:
        return bad
    m = tree_ids.shape[0]
    i = 0
    while i < m:
        t = tree_ids[i]
        p = parent[t, node_ids[i]]
        j = i + 1
        while j < m and tree_ids[j] == t and parent[t, node_ids[j]] == p:
            j += 1
        for e in range(i, j):
            visits[t, node_ids[e]] += 1
            value_sum[t, node_ids[e]] += values[e]
        node = p
        while node != NO_PARENT:
            visits[t, node] += j - i
            for e in range(i, j):
                value_sum[t, node] += values[e]
            node = parent[t, node]
        i = j
    return ALL_FOUND


@njit(cache=True, error_model="numpy")
def _mark_terminal(tree_ids, node_ids, parent, children, num_children, terminal, exhausted):
    for i in range(tree_ids.shape[0]):
        t = tree_ids[i]
        node = node_ids[i]
        terminal[t, node] = True
        if not exhausted[t, node]:
            exhausted[t, node] = True
            _propagate_exhausted(parent, children, num_children, exhausted, t, parent[t, node])


@njit(cache=True, error_model="numpy")
def _best_child(tree_ids, node_ids, children, num_children, visits, value_sum, reward, by, value_mode, out):
    """Per entry, the child with the most visits / highest Q / highest mean / highest reward; NO_NODE for a leaf."""
    for i in range(tree_ids.shape[0]):
        t = tree_ids[i]
        node = node_ids[i]
        best = NO_NODE
        best_key = 0.0
        for j in range(num_children[t, node]):
            ch = children[t, node, j]
            if by == 0:
                key = float(visits[t, ch])
            elif by == 1:
                key = _q(value_sum[t, ch], visits[t, ch], 0, 0.0, value_mode)
            elif by == 2:
                key = _q(value_sum[t, ch], visits[t, ch], 0, 0.0, 0)
            else:
                key = reward[t, ch]
            if best == NO_NODE or key > best_key:
                best = ch
                best_key = key
        out[i] = best


# ---------------------------------------------------------------------------------------------------------------
# The forest
# ---------------------------------------------------------------------------------------------------------------

# name -> (dtype, fill); every per-node field is [T, C], `children` is [T, C, A].
_FIELDS = {
    "parent": (np.int32, NO_PARENT),
    "num_children": (np.int32, 0),
    "depth": (np.int32, 0),
    "visits": (np.int64, 0),
    "value_sum": (np.float64, 0.0),
    "reward": (np.float64, 0.0),
    "prior": (np.float64, 0.0),
    "terminal": (np.bool_, False),
    "exhausted": (np.bool_, False),
    "span_start": (np.int64, NO_SPAN),
    "span_len": (np.int32, 0),
}
# Scratch of `select_leaves`, all zero between calls.
_SCRATCH = {"pending": (np.int64, 0), "blocked": (np.bool_, False)}


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


class Forest:
    """`num_trees` search trees in `[T, C]` arrays (see the module docstring for every field).

    `capacity` is the initial node capacity per tree (doubled as needed); `max_children` bounds a node's
    arity; `backup` ("mean" or "sum") says what a node's value Q is. The arrays are exposed read-only;
    only the methods below change them. An attribute is a view of the current storage: growing reallocates,
    so read it again after `expand` rather than keeping it.
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
        self._arrays: dict[str, np.ndarray] = {}
        self._grow(int(capacity))
        self._num_nodes = np.ones(self.num_trees, np.int64)
        self._arrays["prior"][:, 0] = 1.0
        self._tokens = np.zeros(max(64, capacity), np.int32)
        self.tokens_used = 0

    # -- storage -------------------------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    def _grow(self, capacity: int) -> None:
        """Reallocate every per-node array at `capacity` nodes per tree, keeping the contents."""
        old, t = self._capacity, self.num_trees
        for name, (dtype, fill) in {**_FIELDS, **_SCRATCH}.items():
            new = np.full((t, capacity), fill, dtype)
            if old:
                new[:, :old] = self._arrays[name]
            self._arrays[name] = new
        children = np.full((t, capacity, self.max_children), NO_NODE, np.int32)
        if old:
            children[:, :old] = self._arrays["children"]
        self._arrays["children"] = children
        self._capacity = capacity

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
        if rule not in RULES:
            raise ValueError(f"rule: expected one of {sorted(RULES)}, got {rule!r}")
        if k < 1:
            raise ValueError(f"k: expected >= 1, got {k}")
        a = self._arrays
        out_tree = np.empty(self.num_trees * k, np.int64)
        out_node = np.empty(self.num_trees * k, np.int64)
        n = _select_leaves(
            a["parent"],
            a["children"],
            a["num_children"],
            a["depth"],
            a["visits"],
            a["value_sum"],
            a["prior"],
            a["exhausted"],
            a["pending"],
            a["blocked"],
            self._num_nodes,
            int(k),
            float(c),
            RULES[rule],
            float(virtual_loss),
            self._value_mode,
            NO_DEPTH_LIMIT if max_depth is None else int(max_depth),
            out_tree,
            out_node,
        )
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
        out = np.empty(m, np.int64)
        code = OUT_OF_CAPACITY
        while code == OUT_OF_CAPACITY:
            a = self._arrays
            code = _expand(
                tree_ids,
                parent_ids,
                priors,
                values,
                terminal,
                a["parent"],
                a["children"],
                a["num_children"],
                a["depth"],
                a["visits"],
                a["value_sum"],
                a["reward"],
                a["prior"],
                a["terminal"],
                a["exhausted"],
                a["span_start"],
                a["span_len"],
                self._num_nodes,
                out,
            )
            if code == OUT_OF_CAPACITY:  # some tree is full: double the capacity until the new nodes fit, and retry
                self._reserve(tree_ids)
        if code == BAD_TREE:
            raise IndexError(f"tree_ids: expected ids in [0, {self.num_trees})")
        if code == BAD_PARENT:
            raise IndexError("parent_ids: a parent id is not a node of its tree")
        if code == EXHAUSTED_PARENT:
            raise ValueError("parent_ids: cannot expand an exhausted node (terminal, or nothing left below it)")
        if code == TOO_MANY_CHILDREN:
            raise ValueError(f"expand: a parent would have more than max_children={self.max_children} children")
        if tokens is not None:
            self.set_spans(tree_ids, out, tokens)
        return out

    def backup(self, tree_ids: ArrayLike, node_ids: ArrayLike, values: ArrayLike) -> None:
        """Add one visit and `values[i]` to `node_ids[i]` and each of its ancestors, in entry order."""
        tree_ids, node_ids = _ids(tree_ids, "tree_ids"), _ids(node_ids, "node_ids")
        values = _floats(values, "values", tree_ids.shape[0])
        if node_ids.shape != tree_ids.shape:
            raise ValueError(f"node_ids: expected {tree_ids.shape[0]} ids, got {node_ids.shape[0]}")
        a = self._arrays
        bad = _backup(tree_ids, node_ids, values, a["parent"], a["visits"], a["value_sum"], self._num_nodes)
        if bad != ALL_FOUND:
            raise IndexError(f"entry {bad}: node {node_ids[bad]} of tree {tree_ids[bad]} does not exist")

    def best_child(self, tree_ids: ArrayLike, node_ids: ArrayLike, by: str = "visits") -> np.ndarray:
        """The child with the most visits (`by="visits"`), highest Q ("value"), mean value ("mean") or own
        reward ("reward"); first child on ties; NO_NODE (-1) for a leaf. int64 `[M]`."""
        if by not in BEST_BY:
            raise ValueError(f"by: expected one of {sorted(BEST_BY)}, got {by!r}")
        tree_ids, node_ids = self._checked_nodes(tree_ids, node_ids)
        a = self._arrays
        out = np.empty(tree_ids.shape[0], np.int64)
        _best_child(
            tree_ids,
            node_ids,
            a["children"],
            a["num_children"],
            a["visits"],
            a["value_sum"],
            a["reward"],
            BEST_BY[by],
            self._value_mode,
            out,
        )
        return out

    def mark_terminal(self, tree_ids: ArrayLike, node_ids: ArrayLike) -> None:
        """Make nodes terminal (never expanded, never selected), e.g. leaves the generator could not extend."""
        tree_ids, node_ids = self._checked_nodes(tree_ids, node_ids)
        a = self._arrays
        _mark_terminal(tree_ids, node_ids, a["parent"], a["children"], a["num_children"], a["terminal"], a["exhausted"])

    def set_spans(self, tree_ids: ArrayLike, node_ids: ArrayLike, token_lists: Sequence[Sequence[int]]) -> None:
        """Record the tokens each node adds to its parent's sequence (appended to the token pool)."""
        tree_ids, node_ids = self._checked_nodes(tree_ids, node_ids)
        if len(token_lists) != tree_ids.shape[0]:
            raise ValueError(f"token_lists: expected {tree_ids.shape[0]} lists, got {len(token_lists)}")
        starts, lengths = self._store_tokens(token_lists)
        self._arrays["span_start"][tree_ids, node_ids] = np.where(lengths > 0, starts, NO_SPAN)
        self._arrays["span_len"][tree_ids, node_ids] = lengths

    def _checked_nodes(self, tree_ids, node_ids) -> tuple[np.ndarray, np.ndarray]:
        tree_ids, node_ids = _ids(tree_ids, "tree_ids"), _ids(node_ids, "node_ids")
        if node_ids.shape != tree_ids.shape:
            raise ValueError(f"node_ids: expected {tree_ids.shape[0]} ids, got {node_ids.shape[0]}")
        bad = _check_nodes(tree_ids, node_ids, self._num_nodes)
        if bad != ALL_FOUND:
            raise IndexError(f"entry {bad}: node {node_ids[bad]} of tree {tree_ids[bad]} does not exist")
        return tree_ids, node_ids

    # -- reading single trees (Python speed; for pair extraction and tests) ---------------------------------------

    def q_values(self) -> np.ndarray:
        """Q of every node under the forest's backup mode, float64 `[T, C]` (0 for unvisited nodes)."""
        a = self._arrays
        if self._value_mode == 1:
            return a["value_sum"].copy()
        return np.divide(a["value_sum"], a["visits"], out=np.zeros_like(a["value_sum"]), where=a["visits"] > 0)

    def children_of(self, tree: int, node: int) -> np.ndarray:
        return self._arrays["children"][tree, node, : self._arrays["num_children"][tree, node]].astype(np.int64)

    def path(self, tree: int, node: int) -> list[int]:
        """Node ids from the root to `node`, both included."""
        parent = self._arrays["parent"][tree]
        out = [int(node)]
        while parent[out[-1]] != NO_PARENT:
            out.append(int(parent[out[-1]]))
        return out[::-1]

    def span(self, tree: int, node: int) -> np.ndarray:
        """The tokens `node` adds to its parent's sequence, int32 `[span_len]`."""
        start, length = self._arrays["span_start"][tree, node], self._arrays["span_len"][tree, node]
        return self._tokens[start : start + length] if length else np.zeros(0, np.int32)

    def path_tokens(self, tree: int, node: int) -> np.ndarray:
        """The tokens of every node from the root to `node`, concatenated, int32."""
        spans = [self.span(tree, n) for n in self.path(tree, node)]
        return np.concatenate(spans) if spans else np.zeros(0, np.int32)


def _field_view(name: str) -> property:
    return property(lambda self: _read_only(self._arrays[name]), doc=f"`{name}`, read-only (module docstring: shape)")


# The per-node arrays as read-only attributes: `forest.visits[t, node]`, `forest.children[t, node, j]`, ...
for _name in (*_FIELDS, "children"):
    setattr(Forest, _name, _field_view(_name))
del _name
