"""The prefix cache the generators share KV through: a radix tree over token ids whose nodes own KV blocks.

`PrefixCache(num_blocks, block_size, backend="cpp")` wraps the C++ tree (`rftfast._C.RadixCache`, documented in
csrc/radix_cache.h); `backend="python"` runs the pure-Python reference (`prefix_cache_ref`) behind the same API.
The cache knows nothing of tensors: block ids index a KV pool that the caller owns (`rftfast.generation.kv_pool`).

Blocks. Block index i of a sequence holds its positions [i * block_size, (i + 1) * block_size); a cached
sequence of L tokens is described by ceil(L / block_size) block ids, the last one possibly partial. A block is
free, held by the caller (from `allocate`, until `insert` or `release`), or cached (owned by one tree node):
free + held + cached = num_blocks.

Using it (what `TransformersGenerator` does per prefix)::

    m, blocks = match = cache.match(tokens)     # m tokens are cached, in blocks
    cache.lock(match.node)                      # pin them while the KV is read and extended
    new = cache.allocate(ceil(L / bs) - m // bs)
    ...write positions [m, L) into new (index i of the sequence is new[i - m // bs])...
    inserted = cache.insert(tokens, blocks[: m // bs] + new)
    if inserted.copy:                           # the sequence left the cache inside block m // bs:
        pool.copy(*inserted.copy)               # copy its first n_tokens positions from src to dst
    cache.unlock(match.node)

Copy-on-write. Branching is token-exact. When a sequence leaves the cached ones at a position m inside a block
(m % block_size != 0), that block also holds the cached branch's later tokens, so it cannot be shared: the
caller passes a fresh block for index m // block_size, and `insert` returns `CopyOnWrite(src_block, dst_block,
n_tokens)`, the shared positions [0, n_tokens) of that block to copy from src_block to dst_block in the pool.

Eviction takes the least recently used unlocked leaf first, O(log n) per leaf; `allocate` evicts when too few
blocks are free. A locked node (and so each of its ancestors, which cannot become leaves) is never evicted.

Bad input raises: ValueError (tokens outside int32, wrong block count, a block that is not the caller's, a node
that is not in the cache, unlocking an unlocked node, more blocks asked than exist), IndexError (a block id out
of range), RuntimeError (`allocate` when the blocks it needs are held or locked). A failed call changes nothing,
except that blocks `allocate` evicted before giving up stay evicted.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

BACKENDS = ("cpp", "python")
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1  # token ids and block counts cross into C++ as int32


class CopyOnWrite(NamedTuple):
    """Copy positions [0, n_tokens) of block `src_block` into block `dst_block` of the KV pool."""

    src_block: int
    dst_block: int
    n_tokens: int


class Inserted(NamedTuple):
    """`node`: the handle of the node holding the last inserted token; `copy`: the copy-on-write to apply, if any."""

    node: int
    copy: CopyOnWrite | None


class Match(tuple):
    """A ``(matched_len, block_ids)`` pair that also carries `node`, the handle to lock to pin those blocks.

    `block_ids` holds ceil(matched_len / block_size) blocks; only positions < matched_len of the last one are
    this sequence's. `node` is the root (0) when nothing matched.
    """

    node: int

    def __new__(cls, matched_len: int, block_ids: list[int], node: int) -> Match:
        match = super().__new__(cls, (matched_len, block_ids))
        match.node = node
        return match

    @property
    def matched_len(self) -> int:
        return self[0]

    @property
    def block_ids(self) -> list[int]:
        return self[1]

    def __repr__(self) -> str:
        return f"Match(matched_len={self[0]}, block_ids={self[1]}, node={self.node})"


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was made (lookups, hit/miss tokens, evicted blocks) and its present size."""

    lookups: int
    hit_tokens: int
    miss_tokens: int
    nodes: int
    cached_tokens: int
    free_blocks: int
    held_blocks: int
    cached_blocks: int
    evicted_blocks: int

    @property
    def hit_rate(self) -> float:
        total = self.hit_tokens + self.miss_tokens
        return self.hit_tokens / total if total else 0.0


def check_tokens(tokens: Sequence[int], where: str) -> list[int]:
    """`tokens` as a list of ints in int32 range, or a ValueError saying which one is not."""
    try:
        out = list(map(operator.index, tokens))
    except TypeError as e:
        raise ValueError(f"{where}: tokens must be integers ({e})") from None
    if out and (min(out) < INT32_MIN or max(out) > INT32_MAX):
        bad = next(i for i, t in enumerate(out) if not INT32_MIN <= t <= INT32_MAX)
        raise ValueError(f"{where}: tokens[{bad}] = {out[bad]} is outside the int32 range")
    return out


def as_token_array(tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    """`tokens` as a C-contiguous 1-D int32 array (no copy when it is one), or a ValueError saying what is wrong."""
    if isinstance(tokens, np.ndarray) and tokens.dtype == np.int32 and tokens.ndim == 1:
        return np.ascontiguousarray(tokens)
    try:
        array = np.asarray(tokens)
    except (OverflowError, ValueError, TypeError):
        array = np.asarray(check_tokens(tokens, "tokens"), dtype=np.int64)  # raises with the reason
    if array.size == 0:
        return np.empty(0, dtype=np.int32)
    if array.ndim != 1:
        raise ValueError(f"tokens: expected a 1-D sequence of token ids, got shape {array.shape}")
    if array.dtype == object:  # Python ints beyond 64 bits, or not ints at all
        array = np.asarray(check_tokens(array.tolist(), "tokens"), dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"tokens: expected integer token ids, got dtype {array.dtype}")
    if array.dtype != np.int32:
        out_of_range = (array < INT32_MIN) | (array > INT32_MAX)
        if out_of_range.any():
            bad = int(np.argmax(out_of_range))
            raise ValueError(f"tokens: tokens[{bad}] = {int(array[bad])} is outside the int32 range")
        array = array.astype(np.int32)
    return np.ascontiguousarray(array)


def depth_first_order(prefixes: Sequence[Sequence[int]]) -> list[int]:
    """Indices of `prefixes` in depth-first order of the tree they form: a prefix before its extensions, siblings
    adjacent, ties in their given order. Serving requests in this order lets a prefix cache hit: the parent is
    cached when its children come, and a shared prefix is not evicted between the siblings that use it.

    (Lexicographic order of the token tuples is exactly a depth-first walk of their trie.)

    >>> depth_first_order([(1, 2, 5), (3,), (1, 2), (1, 4), (1, 2, 5)])
    [2, 0, 4, 3, 1]
    """
    keys = [tuple(int(t) for t in p) for p in prefixes]
    return sorted(range(len(keys)), key=keys.__getitem__)


def block_id_list(block_ids: Sequence[int] | np.ndarray, where: str, num_blocks: int) -> list[int]:
    """`block_ids` as a list of ints, or the reason they cannot be: ValueError (not an int), IndexError (past int64;
    ids in int64 range are range-checked by the cache itself)."""
    if isinstance(block_ids, np.ndarray):
        block_ids = block_ids.tolist()
    out = []
    for i, b in enumerate(block_ids):
        if isinstance(b, bool) or not isinstance(b, (int, np.integer)):
            raise ValueError(f"{where}: block_ids[{i}] = {b!r} is not an int")
        b = int(b)
        if not -(2**63) <= b < 2**63:
            raise IndexError(f"{where}: block_ids[{i}] = {b} is out of range [0, {num_blocks})")
        out.append(b)
    return out


class PrefixCache:
    """Radix prefix cache over token ids with KV blocks; see the module docstring for the semantics.

    `backend="cpp"` (default) is the compiled tree; `backend="python"` the reference implementation.

    With the C++ backend, `match` and `insert` are the binding's own methods (set on the instance): a Python call
    layer would cost about as much as the walk. The binding reads a list or tuple of ints, or a 1-D C-contiguous
    int32 array, as it is; anything else goes through `as_token_array` / `block_id_list`, which convert it or raise
    the reason it cannot be.
    """

    def __init__(self, num_blocks: int, block_size: int = 16, backend: str = "cpp") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        for name, value in (("num_blocks", num_blocks), ("block_size", block_size)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name}: expected an int, got {value!r}")
        self.backend = backend
        self.num_blocks, self.block_size = int(num_blocks), int(block_size)
        self._cpp = backend == "cpp"
        if self._cpp:
            from rftfast import _C

            if not INT32_MIN <= self.num_blocks <= INT32_MAX or not INT32_MIN <= self.block_size <= INT32_MAX:
                raise ValueError(
                    f"num_blocks and block_size must be in 1..{INT32_MAX}, got {self.num_blocks} and {self.block_size}"
                )
            self._impl = _C.RadixCache(
                self.num_blocks,
                self.block_size,
                result_types=(Match, Inserted, CopyOnWrite),
                convert_tokens=as_token_array,
                convert_block_ids=block_id_list,
            )
            self.match, self.insert = self._impl.match, self._impl.insert
        else:
            from rftfast.generation.prefix_cache_ref import ReferencePrefixCache  # it imports this module

            self._impl = ReferencePrefixCache(self.num_blocks, self.block_size)

    def match(self, tokens: Sequence[int] | np.ndarray) -> Match:
        """The longest cached prefix of `tokens`: ``(matched_len, block_ids)``, with `.node` to lock."""
        if self._cpp:
            return self._impl.match(tokens)
        matched_len, block_ids, node = self._impl.match(tokens)
        return Match(matched_len, block_ids, node)

    def insert(self, tokens: Sequence[int] | np.ndarray, block_ids: Sequence[int]) -> Inserted:
        """Cache `tokens` with `block_ids` (ceil(len / block_size) of them); see the module docstring.

        Index i takes the cached block from `match` where positions [i * bs, (i + 1) * bs) are all cached, else a
        block from `allocate`, which the cache then owns (or frees, if those positions turned out to be cached by
        now). Returns the node of the last token and the copy-on-write to apply, if any.
        """
        if self._cpp:
            return self._impl.insert(tokens, block_ids)
        if isinstance(block_ids, np.ndarray):
            block_ids = block_ids.tolist()
        node, copy = self._impl.insert(tokens, block_ids)
        return Inserted(node, CopyOnWrite(*copy) if copy is not None else None)

    def allocate(self, n: int) -> list[int]:
        """`n` free block ids, now held by the caller; evicts least recently used leaves if too few are free."""
        return self._impl.allocate(n if type(n) is int and 0 <= n < 2**63 else self._count(n, "allocate"))

    def release(self, block_ids: Sequence[int]) -> None:
        """Give back held blocks that will not be inserted."""
        self._impl.release(block_ids if self._cpp else block_id_list(block_ids, "release", self.num_blocks))

    def lock(self, node: int) -> None:
        """Pin `node` (a reference count): it, and so its ancestors, are never evicted until unlocked."""
        self._impl.lock(node if type(node) is int and 0 <= node < 2**64 else self._node(node, "lock"))

    def unlock(self, node: int) -> None:
        self._impl.unlock(node if type(node) is int and 0 <= node < 2**64 else self._node(node, "unlock"))

    def evict(self, n_blocks: int) -> int:
        """Evict LRU unlocked leaves until `n_blocks` blocks are freed or none is left; returns blocks freed."""
        return self._impl.evict(self._count(n_blocks, "evict"))

    @property
    def stats(self) -> CacheStats:
        return CacheStats(**self._impl.stats())

    def memory_bytes(self) -> int:
        """Bytes of bookkeeping of the C++ tree (node records, edge tokens, block lists, LRU order, block states)
        and of its binding (one int object per block id handed out, kept so results need not make new ones)."""
        if not self._cpp:
            raise NotImplementedError("memory_bytes: measured for the C++ backend only")
        return self._impl.memory_bytes()

    def check_invariants(self) -> None:
        """Walk the whole structure; RuntimeError at the first broken invariant (for tests)."""
        self._impl.check_invariants()

    # -- argument checks the binding cannot make with a clear message ---------------------------------------------

    @staticmethod
    def _count(n: int, where: str) -> int:
        if type(n) is int and -(2**63) <= n < 2**63:  # the common case, cheaply
            return n
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise ValueError(f"{where}: expected an int number of blocks, got {n!r}")
        if not -(2**63) <= n < 2**63:
            raise ValueError(f"{where}: asked for {n} blocks, more than exist")
        return int(n)

    def _node(self, node: int, where: str) -> int:
        if type(node) is int and 0 <= node < 2**64:  # the common case, cheaply
            return node
        if isinstance(node, bool) or not isinstance(node, (int, np.integer)) or (self._cpp and not 0 <= node < 2**64):
            raise ValueError(f"{where}: node {node!r} is not in the cache (handles are the ints match/insert return)")
        return int(node)
