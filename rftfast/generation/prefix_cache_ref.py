"""The prefix cache in plain Python: the reference the C++ cache (csrc/radix_cache.h) is tested against.

Same semantics, same raw results, same exceptions, and the same deterministic choices (which free block comes
next, which leaf is least recently used), so that a differential test can compare every result exactly. It
favours the obvious over the fast: edges are Python lists, the LRU order is a heap with lazy deletion.

Semantics in brief (the full statement is in csrc/radix_cache.h and `rftfast.generation.prefix_cache`):
block index i of a sequence holds positions [i * block_size, (i + 1) * block_size); a node owns the blocks its
edge covers, except that the lower half of a split edge shares the block it begins in with its parent; a new
branch that leaves the cache inside a block gets a fresh copy of that block, and insert() returns the copy
(src_block, dst_block, n_tokens) the caller applies to its KV pool.

Node handles are plain increasing integers here (the root is 0); the C++ handles differ, so tests compare the
two through a bijection.
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Sequence

from rftfast.generation.prefix_cache import INT32_MAX, check_tokens

FREE, HELD, CACHED = 0, 1, 2


class _Node:
    __slots__ = (
        "handle",
        "parent",
        "tokens",
        "start",
        "first_block",
        "blocks",
        "children",
        "lock_count",
        "last_access",
    )

    def __init__(
        self, handle: int, parent: _Node | None, tokens: list[int], start: int, first_block: int, blocks: list[int]
    ):
        self.handle = handle
        self.parent = parent
        self.tokens = tokens  # the edge: positions [start, start + len(tokens))
        self.start = start
        self.first_block = first_block  # blocks[k] holds block index first_block + k
        self.blocks = blocks
        self.children: dict[int, _Node] = {}  # first token of the child's edge -> child
        self.lock_count = 0
        self.last_access = 0


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _check_count(n: int, num_blocks: int, where: str) -> int:
    n = operator.index(n)
    if not 0 <= n <= num_blocks:
        raise ValueError(f"{where}: asked for {n} blocks; the cache has {num_blocks}")
    return n


class ReferencePrefixCache:
    """Pure-Python radix prefix cache; methods return the same raw tuples as `rftfast._C.RadixCache`."""

    def __init__(self, num_blocks: int, block_size: int) -> None:
        for name, value in (("num_blocks", num_blocks), ("block_size", block_size)):
            if not isinstance(value, int) or not 1 <= value <= INT32_MAX:
                raise ValueError(f"{name}: expected 1 to {INT32_MAX}, got {value!r}")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.root = _Node(0, None, [], 0, 0, [])
        self.nodes: dict[int, _Node] = {0: self.root}
        self.next_handle = 1
        self.state = [FREE] * num_blocks
        self.free = list(range(num_blocks - 1, -1, -1))  # a stack: allocate() pops from the end
        self.lru: list[tuple[int, int]] = []  # (last_access, handle), stale entries skipped when popped
        self.clock = 0
        self.counters = dict(lookups=0, hit_tokens=0, miss_tokens=0, evicted_blocks=0)

    # -- walking -----------------------------------------------------------------------------------------------

    def _walk(self, tokens: list[int]) -> tuple[list[_Node], int, int]:
        """(nodes entered, tokens matched, edge tokens matched on the last node if it was left mid-edge else 0)."""
        node, pos, path = self.root, 0, []
        while pos < len(tokens):
            child = node.children.get(tokens[pos])
            if child is None:
                break
            edge = child.tokens
            if tokens[pos : pos + len(edge)] == edge:  # the common case, compared at C speed
                k = len(edge)
            else:
                k = 0
                while k < len(edge) and pos + k < len(tokens) and edge[k] == tokens[pos + k]:
                    k += 1
            path.append(child)
            pos += k
            if k < len(edge):
                return path, pos, k
            node = child
        return path, pos, 0

    def _path_blocks(self, path: list[_Node], matched: int) -> list[int]:
        blocks: list[int] = []
        for node in path:
            del blocks[node.first_block :]  # a node's own copy replaces the block its parent ended in
            blocks.extend(node.blocks)
        return blocks[: _ceil_div(matched, self.block_size)]

    def _evictable(self, node: _Node) -> bool:
        return node is not self.root and not node.children and node.lock_count == 0

    def _offer(self, node: _Node) -> None:
        """Enter `node` in the LRU heap if it is evictable (older entries for it go stale)."""
        if self._evictable(node):
            heapq.heappush(self.lru, (node.last_access, node.handle))

    def _touch(self, path: list[_Node]) -> None:
        for node in path:
            self.clock += 1
            node.last_access = self.clock
            self._offer(node)

    # -- match / insert ----------------------------------------------------------------------------------------

    def match(self, tokens: Sequence[int]) -> tuple[int, list[int], int]:
        tokens = check_tokens(tokens, "match")
        path, matched, _ = self._walk(tokens)
        blocks = self._path_blocks(path, matched)
        self._touch(path)
        self.counters["lookups"] += 1
        self.counters["hit_tokens"] += matched
        self.counters["miss_tokens"] += len(tokens) - matched
        return matched, blocks, (path[-1] if path else self.root).handle

    def insert(self, tokens: Sequence[int], block_ids: Sequence[int]) -> tuple[int, tuple[int, int, int] | None]:
        tokens = check_tokens(tokens, "insert")
        n, bs = len(tokens), self.block_size
        if n == 0:
            raise ValueError("insert: empty token sequence")
        need = _ceil_div(n, bs)
        if len(block_ids) != need:
            raise ValueError(f"insert: {n} tokens take {need} block ids at block_size {bs}, got {len(block_ids)}")
        block_ids = [self._check_block(b, i, "insert") for i, b in enumerate(block_ids)]

        path, m, partial = self._walk(tokens)
        cached = self._path_blocks(path, m)
        j = m // bs  # the first block index a new node would own
        diverges_inside_block = m < n and m % bs != 0
        seen: set[int] = set()
        for i, b in enumerate(block_ids):
            if i < len(cached) and b == cached[i]:
                if diverges_inside_block and i == j:
                    raise ValueError(
                        f"insert: block_ids[{i}] = {b} is the cached block the sequence leaves at "
                        f"position {m}; pass a freshly allocated block and apply the returned copy"
                    )
                continue
            if self.state[b] != HELD:
                raise ValueError(
                    f"insert: block_ids[{i}] = {b} is {'free' if self.state[b] == FREE else 'cached'}"
                    "; pass the cached block from match() or one from allocate()"
                )
            if b in seen:
                raise ValueError(f"insert: block_ids[{i}] = {b} appears twice")
            seen.add(b)

        first_owned = j if m < n else need
        for i in range(first_owned):  # held blocks for positions already cached are redundant
            if block_ids[i] != cached[i]:
                self._free_block(block_ids[i])
        if m == n:
            self._touch(path)
            return path[-1].handle, None

        if partial:
            path[-1] = self._split(path[-1], partial)
        parent = path[-1] if path else self.root
        leaf = _Node(self._new_handle(), parent, tokens[m:], m, j, block_ids[j:])
        for b in leaf.blocks:
            self.state[b] = CACHED
        parent.children[tokens[m]] = leaf
        self.nodes[leaf.handle] = leaf
        path.append(leaf)
        self._touch(path)
        copy = (cached[j], block_ids[j], m - j * bs) if diverges_inside_block else None
        return leaf.handle, copy

    def _new_handle(self) -> int:
        self.next_handle += 1
        return self.next_handle - 1

    def _split(self, lower: _Node, k: int) -> _Node:
        """Cut `lower`'s edge after k tokens; returns the new upper half, `lower` keeps its handle."""
        cut = lower.start + k
        n_upper = _ceil_div(cut, self.block_size) - lower.first_block
        upper = _Node(
            self._new_handle(), lower.parent, lower.tokens[:k], lower.start, lower.first_block, lower.blocks[:n_upper]
        )
        upper.last_access = lower.last_access
        lower.tokens, lower.blocks = lower.tokens[k:], lower.blocks[n_upper:]
        lower.start, lower.first_block, lower.parent = cut, lower.first_block + n_upper, upper
        upper.children[lower.tokens[0]] = lower
        upper.parent.children[upper.tokens[0]] = upper
        self.nodes[upper.handle] = upper
        return upper

    # -- blocks ------------------------------------------------------------------------------------------------

    def _check_block(self, b: int, i: int, where: str) -> int:
        b = operator.index(b)
        if not 0 <= b < self.num_blocks:
            raise IndexError(f"{where}: block_ids[{i}] = {b} is out of range [0, {self.num_blocks})")
        return b

    def _free_block(self, b: int) -> None:
        self.state[b] = FREE
        self.free.append(b)

    def allocate(self, n: int) -> list[int]:
        n = _check_count(n, self.num_blocks, "allocate")
        if len(self.free) < n:
            self.evict(n - len(self.free))
        if len(self.free) < n:
            raise RuntimeError(
                f"allocate: asked for {n} blocks but only {len(self.free)} can be freed; the rest "
                "are held by callers or locked in the cache"
            )
        out = [self.free.pop() for _ in range(n)]
        for b in out:
            self.state[b] = HELD
        return out

    def release(self, block_ids: Sequence[int]) -> None:
        block_ids = [self._check_block(b, i, "release") for i, b in enumerate(block_ids)]
        seen: set[int] = set()
        for i, b in enumerate(block_ids):
            if self.state[b] != HELD:
                raise ValueError(f"release: block_ids[{i}] = {b} is not held")
            if b in seen:
                raise ValueError(f"release: block_ids[{i}] = {b} appears twice")
            seen.add(b)
        for b in block_ids:
            self._free_block(b)

    def evict(self, n_blocks: int) -> int:
        n_blocks = _check_count(n_blocks, self.num_blocks, "evict")
        freed = 0
        while freed < n_blocks and self.lru:
            last_access, handle = heapq.heappop(self.lru)
            node = self.nodes.get(handle)
            if node is None or node.last_access != last_access or not self._evictable(node):
                continue  # a stale entry: the node was evicted, used again, locked, or got children since
            freed += self._evict_leaf(node)
        return freed

    def _evict_leaf(self, node: _Node) -> int:
        for b in node.blocks:
            self._free_block(b)
        self.counters["evicted_blocks"] += len(node.blocks)
        del node.parent.children[node.tokens[0]]
        del self.nodes[node.handle]
        self._offer(node.parent)
        return len(node.blocks)

    # -- locks -------------------------------------------------------------------------------------------------

    def _node(self, handle: int, where: str) -> _Node:
        node = self.nodes.get(handle) if isinstance(handle, int) else None
        if node is None:
            raise ValueError(
                f"{where}: node {handle!r} is not in the cache (evicted, or never returned by match/insert)"
            )
        return node

    def lock(self, node: int) -> None:
        self._node(node, "lock").lock_count += 1

    def unlock(self, node: int) -> None:
        target = self._node(node, "unlock")
        if target.lock_count == 0:
            raise ValueError(f"unlock: node {node} is not locked")
        target.lock_count -= 1
        self._offer(target)

    # -- statistics and checks ---------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        nodes = [node for node in self.nodes.values() if node is not self.root]
        return dict(
            self.counters,
            nodes=len(nodes),
            cached_tokens=sum(len(node.tokens) for node in nodes),
            free_blocks=self.state.count(FREE),
            held_blocks=self.state.count(HELD),
            cached_blocks=self.state.count(CACHED),
        )

    def check_invariants(self) -> None:
        """Raise RuntimeError at the first broken invariant."""

        def fail(what: str):
            raise RuntimeError(f"invariant violated: {what}")

        bs, owned, stack, reachable = self.block_size, set(), [self.root], 0
        while stack:
            node = stack.pop()
            reachable += 1
            if node.lock_count < 0:
                fail("negative lock count")
            if node is not self.root:
                if not node.tokens or node.start != node.parent.start + len(node.parent.tokens):
                    fail("edge")
                if node.first_block not in (node.start // bs, _ceil_div(node.start, bs)):
                    fail("first_block")
                if len(node.blocks) != _ceil_div(node.start + len(node.tokens), bs) - node.first_block:
                    fail("owned block count")
            for b in node.blocks:
                if b in owned or self.state[b] != CACHED:
                    fail(f"block {b} owned twice or not marked cached")
                owned.add(b)
            for token, child in node.children.items():
                if child.parent is not node or child.tokens[0] != token:
                    fail("child table")
                stack.append(child)
        if reachable != len(self.nodes):
            fail("unreachable nodes")
        if owned != {b for b, s in enumerate(self.state) if s == CACHED}:
            fail("cached blocks without an owner")
        if sorted(self.free) != [b for b, s in enumerate(self.state) if s == FREE]:
            fail("free list")
