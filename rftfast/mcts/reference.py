"""The same search rules on plain Python objects: the oracle for the compiled forest, and the baseline it beats.

`ReferenceForest` mirrors `Forest`'s operations (`select_leaves`, `expand`, `backup`, `best_child`,
`mark_terminal`) with one `Node` object per node, the way public MCTS-for-LLM code keeps its trees. It follows
`forest.py` rule for rule and operation for operation (same float expressions, same order of additions, same
tie-breaking), so on the same trace both hold identical visits and values. It is written plainly, not slowed:
`__slots__`, local variables, no per-step allocation beyond what the rules need.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rftfast.mcts.forest import BACKUPS, BEST_BY, RULES


class Node:
    __slots__ = (
        "id",
        "parent",
        "children",
        "depth",
        "visits",
        "value_sum",
        "reward",
        "prior",
        "terminal",
        "exhausted",
        "pending",
        "blocked",
    )

    def __init__(self, id: int, parent: Node | None, depth: int, prior: float, reward: float, terminal: bool) -> None:
        self.id = id
        self.parent = parent
        self.children: list[Node] = []
        self.depth = depth
        self.visits = 0
        self.value_sum = 0.0
        self.reward = reward
        self.prior = prior
        self.terminal = terminal
        self.exhausted = terminal
        self.pending = 0
        self.blocked = False


class ReferenceForest:
    """`num_trees` trees of `Node`s; node ids are creation order per tree, as in `Forest`."""

    def __init__(self, num_trees: int, max_children: int = 8, *, backup: str = "mean") -> None:
        self.max_children = max_children
        self.value_mode = BACKUPS[backup]
        self.trees: list[list[Node]] = [[Node(0, None, 0, 1.0, 0.0, False)] for _ in range(num_trees)]

    def _q(self, node: Node, virtual_loss: float) -> float:
        w = node.value_sum - virtual_loss * node.pending
        if self.value_mode == 1:
            return w
        n = node.visits + node.pending
        return w / n if n > 0 else 0.0

    def select_leaves(
        self, k: int = 1, c: float = 1.0, rule: str = "uct", virtual_loss: float = 1.0, max_depth: int | None = None
    ) -> tuple[list[int], list[int]]:
        uct = RULES[rule] == 0
        max_depth = 2**62 if max_depth is None else max_depth
        out_tree: list[int] = []
        out_node: list[int] = []
        for t, nodes in enumerate(self.trees):
            root = nodes[0]
            blocked: list[Node] = []
            picked: list[Node] = []
            for pick in range(k):
                found = None
                while found is None and not root.exhausted and not root.blocked:
                    node = root
                    while True:
                        if not node.children:
                            if node.depth >= max_depth:
                                node.exhausted = True
                                _propagate_exhausted(node.parent)
                            else:
                                found = node
                            break
                        n_parent = node.visits + node.pending
                        parent_factor = math.sqrt(math.log(max(n_parent, 1))) if uct else math.sqrt(n_parent)
                        best, best_score = None, 0.0
                        for ch in node.children:
                            if ch.exhausted or ch.blocked:
                                continue
                            q = self._q(ch, virtual_loss)
                            n = ch.visits + ch.pending
                            child_factor = 1.0 / math.sqrt(n + 1) if uct else 1.0 / (1 + n)
                            s = q + c * ch.prior * parent_factor * child_factor
                            if best is None or s > best_score:
                                best, best_score = ch, s
                        if best is None:
                            node.blocked = True
                            blocked.append(node)
                            break
                        node = best
                if found is None:
                    break
                out_tree.append(t)
                out_node.append(found.id)
                if pick == k - 1:
                    break  # no descent follows in this tree: no need to block or weigh down the path
                node = found
                while node is not None and not any(not ch.exhausted and not ch.blocked for ch in node.children):
                    node.blocked = True
                    blocked.append(node)
                    node = node.parent
                node = found
                while node is not None:
                    node.pending += 1
                    node = node.parent
                picked.append(found)
            for leaf in picked:
                node = leaf
                while node is not None:
                    node.pending -= 1
                    node = node.parent
            for node in blocked:
                node.blocked = False
        return out_tree, out_node

    def expand(
        self,
        tree_ids: Sequence[int],
        parent_ids: Sequence[int],
        priors: Sequence[float],
        values: Sequence[float],
        terminal: Sequence[bool] | None = None,
    ) -> list[int]:
        terminal = [False] * len(tree_ids) if terminal is None else terminal
        counts: dict[tuple[int, int], int] = {}
        for t, p in zip(tree_ids, parent_ids):
            if not 0 <= p < len(self.trees[t]):
                raise IndexError(f"node {p} of tree {t} does not exist")
            if self.trees[t][p].exhausted:
                raise ValueError("cannot expand an exhausted node")
            counts[t, p] = counts.get((t, p), len(self.trees[t][p].children)) + 1
            if counts[t, p] > self.max_children:
                raise ValueError("too many children")
        out = []
        for t, p, prior, value, term in zip(tree_ids, parent_ids, priors, values, terminal):
            nodes = self.trees[t]
            parent = nodes[p]
            child = Node(len(nodes), parent, parent.depth + 1, float(prior), float(value), bool(term))
            nodes.append(child)
            parent.children.append(child)
            out.append(child.id)
        for t, p, term in zip(tree_ids, parent_ids, terminal):
            if term:
                _propagate_exhausted(self.trees[t][p])
        return out

    def backup(self, tree_ids: Sequence[int], node_ids: Sequence[int], values: Sequence[float]) -> None:
        for t, n, v in zip(tree_ids, node_ids, values):
            node = self.trees[t][n]
            v = float(v)
            while node is not None:
                node.visits += 1
                node.value_sum += v
                node = node.parent

    def mark_terminal(self, tree_ids: Sequence[int], node_ids: Sequence[int]) -> None:
        for t, n in zip(tree_ids, node_ids):
            node = self.trees[t][n]
            node.terminal = True
            if not node.exhausted:
                node.exhausted = True
                _propagate_exhausted(node.parent)

    def best_child(self, tree_ids: Sequence[int], node_ids: Sequence[int], by: str = "visits") -> list[int]:
        code = BEST_BY[by]
        out = []
        for t, n in zip(tree_ids, node_ids):
            best, best_key = -1, 0.0
            for ch in self.trees[t][n].children:
                if code == 0:
                    key = float(ch.visits)
                elif code == 1:
                    key = self._q(ch, 0.0)
                elif code == 2:
                    key = ch.value_sum / ch.visits if ch.visits > 0 else 0.0
                else:
                    key = ch.reward
                if best == -1 or key > best_key:
                    best, best_key = ch.id, key
            out.append(best)
        return out


def _propagate_exhausted(node: Node | None) -> None:
    while node is not None:
        if not node.children or node.exhausted:
            return
        for ch in node.children:
            if not ch.exhausted:
                return
        node.exhausted = True
        node = node.parent
