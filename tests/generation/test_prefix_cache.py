"""The prefix cache: the C++ tree against the pure-Python reference, operation by operation.

A hypothesis state machine runs random operation sequences (`random_scenario`: the cache used as a caller uses
it, and misused) on both and compares every result, the statistics, and the structural invariants (reference
counts never negative, locked nodes never evicted, free + held + cached = total blocks, a match after an insert
returns the inserted blocks). tests/generation/test_prefix_cache_sanitizers.py replays the same operations through a C++
driver built with AddressSanitizer and UBSan.

Operations are tuples (`match`, `insert`, `allocate`, `release`, `lock`, `unlock`, `evict`, `stats`). Node handles
differ between the C++ cache and the reference, so operations name nodes by *index*: the k-th distinct handle a
cache returned; an index never returned stands for a handle that is not in the cache. Results are normalised the
same way, so both caches must give identical results.
"""

from __future__ import annotations

import array
import math
import random
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from rftfast import _C
from rftfast.generation import PrefixCache

NOT_A_HANDLE = 2**63  # + index: a handle neither cache ever returns


class Replayer:
    """Applies operations to one cache (a `PrefixCache`), naming nodes by index; returns normalised results."""

    def __init__(self, cache):
        self.cache = cache
        self.index_of: dict[int, int] = {}
        self.handles: list[int] = []

    def node_index(self, handle: int) -> int:
        if handle not in self.index_of:
            self.index_of[handle] = len(self.handles)
            self.handles.append(handle)
        return self.index_of[handle]

    def handle(self, index: int) -> int:
        return self.handles[index] if index < len(self.handles) else NOT_A_HANDLE + index

    def apply(self, op: tuple) -> tuple:
        kind, *args = op
        cache = self.cache
        try:
            if kind == "match":
                match = cache.match(args[0])
                return ("match", match.matched_len, tuple(match.block_ids), self.node_index(match.node))
            if kind == "insert":
                inserted = cache.insert(args[0], args[1])
                return ("insert", self.node_index(inserted.node), tuple(inserted.copy) if inserted.copy else None)
            if kind == "allocate":
                return ("allocate", tuple(cache.allocate(args[0])))
            if kind == "release":
                cache.release(args[0])
                return ("release",)
            if kind == "lock":
                cache.lock(self.handle(args[0]))
                return ("lock",)
            if kind == "unlock":
                cache.unlock(self.handle(args[0]))
                return ("unlock",)
            if kind == "evict":
                return ("evict", cache.evict(args[0]))
            if kind == "stats":
                s = cache.stats
                return (
                    "stats",
                    s.lookups,
                    s.hit_tokens,
                    s.miss_tokens,
                    s.nodes,
                    s.cached_tokens,
                    s.free_blocks,
                    s.held_blocks,
                    s.cached_blocks,
                    s.evicted_blocks,
                )
        except (ValueError, IndexError, RuntimeError) as e:
            return ("error", type(e).__name__)
        raise AssertionError(f"unknown operation {kind!r}")


def result_line(result: tuple) -> str:
    """A result as the replay driver prints it."""

    def field_text(x):
        if x is None:
            return "-"
        if isinstance(x, tuple):
            return ",".join(map(str, x)) or "."
        return str(x)

    return " ".join(field_text(x) for x in result)


def op_line(op: tuple) -> str:
    """An operation as the replay driver reads it: lists are written as a count then the items."""
    parts = [op[0]]
    for arg in op[1:]:
        parts += [str(len(arg)), *map(str, arg)] if isinstance(arg, (list, tuple)) else [str(arg)]
    return " ".join(parts)


@dataclass
class ScenarioState:
    """What the scenario generator remembers between scenarios."""

    num_blocks: int
    block_size: int
    sequences: list[list[int]] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    locks: dict[int, int] = field(default_factory=dict)  # node index -> lock count, from successful lock/unlock


_SPECIAL_TOKENS = (2**31 - 1, -(2**31), 0)


def _sequence(rng: random.Random, state: ScenarioState) -> list[int]:
    """A token sequence that often shares a prefix with one inserted before (so edges split and blocks are shared)."""
    alphabet = 3 if rng.random() < 0.7 else 50
    tail = [
        rng.choice(_SPECIAL_TOKENS) if rng.random() < 0.05 else rng.randrange(alphabet)
        for _ in range(rng.randint(0, 3 * state.block_size + 2))
    ]
    if state.sequences and rng.random() < 0.8:
        base = rng.choice(state.sequences)
        return base[: rng.randint(0, len(base))] + tail
    return tail


def random_scenario(rng: random.Random, reference: Replayer, state: ScenarioState):
    """Yield (operation, result on the reference) for one randomly chosen scenario; also asserts what the
    reference alone must satisfy (a match after an insert returns the inserted blocks)."""

    def run(op):
        result = reference.apply(op)
        if result[0] == "allocate":
            state.held += result[1]
        elif result[0] in ("insert", "release"):  # every held block passed is the cache's (or free) again
            passed = set(op[-1])
            state.held = [b for b in state.held if b not in passed]
        if result[0] == "insert":
            state.sequences.append(op[1])
        if op[0] in ("lock", "unlock") and result[0] != "error":
            state.locks[op[1]] = state.locks.get(op[1], 0) + (1 if op[0] == "lock" else -1)
        return op, result

    bs, nb = state.block_size, state.num_blocks
    kind = rng.choices(
        ["protocol", "match", "allocate", "release", "bad_insert", "lock", "evict", "stats"],
        weights=[8, 2, 2, 2, 2, 2, 1, 1],
    )[0]
    if kind == "protocol":
        tokens = _sequence(rng, state)
        op, match = run(("match", tokens))
        yield op, match
        _, matched, cached_blocks, node = match
        pin = rng.random() < 0.9  # unpinned, allocate() may evict the very blocks just matched
        if pin:
            yield run(("lock", node))
        n_new = math.ceil(len(tokens) / bs) - matched // bs
        op, allocated = run(("allocate", n_new))
        yield op, allocated
        if allocated[0] != "error":
            new = list(allocated[1])
            layout = list(cached_blocks[: matched // bs]) + new
            if rng.random() < 0.1 and matched % bs and matched < len(tokens):
                layout[matched // bs] = cached_blocks[matched // bs]  # the shared block: must be refused
            op, inserted = run(("insert", tokens, layout))
            yield op, inserted
            if inserted[0] == "error":
                yield run(("release", new))
            else:
                op, rematch = run(("match", tokens))
                yield op, rematch
                if pin:  # a match after an insert returns the inserted blocks (the cache's own where it had them)
                    expected = cached_blocks if matched == len(tokens) else tuple(layout)
                    assert rematch[1] == len(tokens) and rematch[2] == expected, (layout, rematch)
        if pin:
            yield run(("unlock", node))
    elif kind == "match":
        yield run(("match", _sequence(rng, state)))
    elif kind == "allocate":
        yield run(("allocate", rng.choice([0, 1, 2, rng.randint(0, nb), nb, nb + 1, -1])))
    elif kind == "release":
        blocks = rng.sample(state.held, rng.randint(0, len(state.held)))
        if rng.random() < 0.2:
            blocks.append(rng.choice([-1, nb, rng.randrange(nb), *blocks[:1]]))  # out of range, not held, twice
        yield run(("release", blocks))
    elif kind == "bad_insert":
        tokens = _sequence(rng, state)
        n = math.ceil(len(tokens) / bs) + rng.choice([0, 0, 1, -1])
        blocks = [rng.choice([rng.randrange(nb), -1, nb, *state.held[:2]]) for _ in range(max(n, 0))]
        yield run(("insert", tokens, blocks))
    elif kind == "lock":
        known = len(reference.handles)
        locked = [k for k, count in state.locks.items() if count > 0]
        index = rng.choice(locked) if locked and rng.random() < 0.5 else rng.randrange(known + 2)
        yield run((rng.choice(["lock", "unlock"]), index))
    elif kind == "evict":
        yield run(("evict", rng.choice([0, 1, rng.randint(0, nb), nb, nb + 1, -1])))
    else:
        yield run(("stats",))


def random_program(seed: int, n_scenarios: int, reference_factory) -> tuple[int, int, list[tuple], list[tuple]]:
    """A whole program: (num_blocks, block_size, operations, reference results)."""
    rng = random.Random(seed)
    num_blocks, block_size = rng.randint(1, 24), rng.randint(1, 5)
    reference = Replayer(reference_factory(num_blocks, block_size))
    state = ScenarioState(num_blocks, block_size)
    ops, results = [], []
    for _ in range(n_scenarios):
        for op, result in random_scenario(rng, reference, state):
            ops.append(op)
            results.append(result)
    return num_blocks, block_size, ops, results


# ================================================================================================================
# Differential state machine: C++ against the reference
# ================================================================================================================


class CppAgainstReference(RuleBasedStateMachine):
    """Both caches receive the same operations; every result, the statistics and the invariants must agree."""

    def __init__(self):
        super().__init__()
        self.cpp = self.reference = self.state = None

    @precondition(lambda self: self.cpp is None)
    @rule(num_blocks=st.integers(1, 24), block_size=st.integers(1, 5))
    def make_caches(self, num_blocks, block_size):
        self.cpp = Replayer(PrefixCache(num_blocks, block_size, backend="cpp"))
        self.reference = Replayer(PrefixCache(num_blocks, block_size, backend="python"))
        self.state = ScenarioState(num_blocks, block_size)

    @precondition(lambda self: self.cpp is not None)
    @rule(rng=st.randoms(use_true_random=False))
    def scenario(self, rng):
        for op, expected in random_scenario(rng, self.reference, self.state):
            assert self.cpp.apply(op) == expected, op

    @invariant()
    def same_structure_and_invariants(self):
        if self.cpp is None:
            return
        self.cpp.cache.check_invariants()
        self.reference.cache.check_invariants()
        stats = self.cpp.cache.stats
        assert stats == self.reference.cache.stats
        assert stats.free_blocks + stats.held_blocks + stats.cached_blocks == self.state.num_blocks
        assert sorted(self.state.held) == sorted(
            b for b, s in enumerate(self.reference.cache._impl.state) if s == 1
        )  # HELD
        for index, count in self.state.locks.items():
            assert count >= 0  # an unlock of an unlocked node was refused, never counted
            if count > 0:  # a locked node is never evicted
                assert self.reference.handle(index) in self.reference.cache._impl.nodes
                self.cpp.cache.lock(self.cpp.handle(index))  # raises if the C++ node is gone
                self.cpp.cache.unlock(self.cpp.handle(index))


TestCppAgainstReference = CppAgainstReference.TestCase
TestCppAgainstReference.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_long_random_programs_agree():
    """Longer runs than the state machine's, on fixed seeds: many evictions, splits and copies."""
    for seed in range(20):
        num_blocks, block_size, ops, expected = random_program(seed, 150, python_cache)
        cpp = Replayer(PrefixCache(num_blocks, block_size, backend="cpp"))
        for op, result in zip(ops, expected):
            assert cpp.apply(op) == result, (seed, op)
        cpp.cache.check_invariants()


def python_cache(num_blocks, block_size):
    return PrefixCache(num_blocks, block_size, backend="python")


# How a caller may hand over tokens and block ids: the binding reads lists, tuples and 1-D C-contiguous int32
# buffers itself; everything else goes through the wrapper's converters. Each kind must give the same results.
INPUT_KINDS = {
    "list": list,
    "tuple": tuple,
    "int32 array": lambda xs: np.array(xs, dtype=np.int32),
    "int64 array": lambda xs: np.array(xs, dtype=np.int64),
    "strided int32 array": lambda xs: np.repeat(np.array(xs, dtype=np.int32), 2)[::2],
    "array.array": lambda xs: array.array("i", xs),
    "numpy scalars": lambda xs: [np.int32(x) for x in xs],
}


def _as_kind(op: tuple, kind: str) -> tuple:
    """`op` with its token list (match, insert) and block ids (insert, release) given as `kind`."""
    convert = INPUT_KINDS[kind]
    if op[0] in ("match", "insert"):
        op = (op[0], convert(op[1]), *op[2:])
    if op[0] == "insert" and kind != "array.array":  # block ids past int32 exist in bad_insert scenarios
        op = (*op[:2], convert(op[2]) if "int32" not in kind else np.array(op[2], dtype=np.int64))
    if op[0] == "release":
        op = ("release", convert(op[1]) if "int32" not in kind and kind != "array.array" else np.array(op[1]))
    return op


@pytest.mark.parametrize("kind", INPUT_KINDS)
def test_random_programs_agree_with_every_input_kind(kind):
    """The reference's results, replayed on C++ with tokens and block ids handed over as `kind`."""
    for seed in range(100, 108):
        num_blocks, block_size, ops, expected = random_program(seed, 150, python_cache)
        cpp = Replayer(PrefixCache(num_blocks, block_size, backend="cpp"))
        for op, result in zip(ops, expected):
            assert cpp.apply(_as_kind(op, kind)) == result, (seed, op)
        cpp.cache.check_invariants()


def _mcts_trace(rng: random.Random, trees: int, system: list[int]):
    """Token lists in expansion order: a shared system prompt, a query, then depth 3 x branching 3 of short steps."""
    for _ in range(trees):
        prompt = system + [rng.randrange(50) for _ in range(rng.randint(3, 30))]
        frontier, out = [prompt], [prompt]
        for _depth in range(3):
            frontier = [p + [rng.randrange(50) for _ in range(rng.randint(1, 9))] for p in frontier for _ in range(3)]
            out += frontier
        yield from out


@pytest.mark.parametrize("block_size", [1, 4, 16])
def test_mcts_trace_agrees_with_the_reference_for_lists_and_arrays(block_size):
    """The generator's protocol on an MCTS-shaped trace with evictions (a small alphabet, so edges split often):
    C++ given lists and C++ given int32 arrays return exactly the reference's results, call by call."""
    rng = random.Random(block_size)
    system = [rng.randrange(50) for _ in range(40)]
    sequences = list(_mcts_trace(rng, 30, system))
    num_blocks = 6 * math.ceil(120 / block_size)  # a few trees' worth: the pool evicts all along
    replayers = {
        "reference": (Replayer(python_cache(num_blocks, block_size)), list),
        "C++ lists": (Replayer(PrefixCache(num_blocks, block_size)), list),
        "C++ arrays": (Replayer(PrefixCache(num_blocks, block_size)), lambda xs: np.array(xs, dtype=np.int32)),
    }
    results = {name: [] for name in replayers}
    for tokens in sequences:
        for name, (replayer, convert) in replayers.items():
            seq = convert(tokens)
            match = replayer.apply(("match", seq))
            _, matched, blocks, node = match
            replayer.apply(("lock", node))
            new = replayer.cache.allocate(math.ceil(len(tokens) / block_size) - matched // block_size)
            inserted = replayer.apply(("insert", seq, list(blocks[: matched // block_size]) + new))
            replayer.apply(("unlock", node))
            results[name].append((match, inserted, replayer.cache.stats))
    assert results["C++ lists"] == results["reference"]
    assert results["C++ arrays"] == results["reference"]
    assert results["reference"][-1][2].evicted_blocks > 0
    for replayer, _ in replayers.values():
        replayer.cache.check_invariants()


# ================================================================================================================
# Semantics, worked by hand
# ================================================================================================================


@pytest.fixture(params=["cpp", "python"])
def backend(request):
    return request.param


def test_insert_then_match_and_copy_on_write(backend):
    cache = PrefixCache(16, 4, backend=backend)
    a = list(range(10))  # 10 tokens: blocks for positions 0-3, 4-7, 8-9
    blocks_a = cache.allocate(3)
    assert cache.insert(a, blocks_a).copy is None
    assert cache.match(a) == (10, blocks_a)
    assert cache.match(a[:6] + [99]) == (6, blocks_a[:2])  # position 5 lies in the second block

    # b leaves a at position 6, inside block 1 (positions 4-7): block 1 cannot be shared.
    b = a[:6] + [50, 51, 52]
    match = cache.match(b)
    m, cached = match
    assert m == 6
    cache.lock(match.node)
    new = cache.allocate(math.ceil(len(b) / 4) - m // 4)  # a copy of block 1, and block 2
    inserted = cache.insert(b, cached[: m // 4] + new)
    cache.unlock(match.node)
    assert inserted.copy == (blocks_a[1], new[0], 2)  # positions 4 and 5 come from a's block
    assert cache.match(b) == (9, [blocks_a[0], *new])
    assert cache.match(a) == (10, blocks_a)  # a is untouched
    assert cache.stats.nodes == 3  # a's edge was split at 6: [0, 6) -> {[6, 10), [6, 9)}
    cache.check_invariants()


def test_split_inside_a_block_shares_it_with_the_lower_half(backend):
    cache = PrefixCache(16, 4, backend=backend)
    a = list(range(10))
    blocks_a = cache.allocate(3)
    cache.insert(a, blocks_a)
    # c ends at position 5, inside a's edge: the edge splits, and the upper half [0, 5) owns blocks 0 and 1,
    # which the lower half [5, 10) goes on using for its positions 5-7.
    inserted = cache.insert(a[:5], blocks_a[:2])
    assert inserted.copy is None
    assert cache.match(a[:5]).node == inserted.node
    assert cache.stats.nodes == 1  # nothing new: c was already cached as a prefix of a
    d = a[:5] + [77]
    m, cached = match = cache.match(d)
    cache.lock(match.node)
    inserted = cache.insert(d, cached[:1] + cache.allocate(1))
    assert inserted.copy is not None and inserted.copy.n_tokens == 1
    cache.unlock(match.node)
    assert cache.stats.nodes == 3
    # Evict everything but... the leaves go first, each freeing its own blocks.
    assert cache.evict(16) == 4
    assert cache.stats.cached_blocks == 0 and cache.stats.nodes == 0
    cache.check_invariants()


def test_redundant_held_blocks_are_given_back(backend):
    cache = PrefixCache(8, 2, backend=backend)
    cache.insert([1, 2, 3], cache.allocate(2))
    # The same tokens again, all in fresh blocks: the cache keeps its own and frees these.
    spare = cache.allocate(2)
    free_before = cache.stats.free_blocks
    cache.insert([1, 2, 3], spare)
    assert cache.stats.free_blocks == free_before + 2 and cache.stats.held_blocks == 0


def test_lru_eviction_order_and_locks(backend):
    cache = PrefixCache(6, 2, backend=backend)
    handles = {}
    for name, tokens in (("x", [1, 1]), ("y", [2, 2]), ("z", [3, 3])):
        handles[name] = cache.insert(tokens, cache.allocate(1)).node
    cache.match([1, 1])  # x is now the most recently used; y the least
    cache.lock(handles["y"])
    assert cache.evict(1) == 1  # y is locked: z goes
    assert cache.match([3, 3]).matched_len == 0
    assert cache.match([2, 2]).matched_len == 2
    # allocate evicts what it needs, but never a locked node.
    assert len(cache.allocate(5)) == 5
    assert cache.match([2, 2]).matched_len == 2 and cache.match([1, 1]).matched_len == 0
    with pytest.raises(RuntimeError, match="locked"):
        cache.allocate(6)
    cache.unlock(handles["y"])
    with pytest.raises(ValueError, match="not locked"):
        cache.unlock(handles["y"])


def test_bad_input_raises_with_the_reason(backend):
    cache = PrefixCache(4, 2, backend=backend)
    with pytest.raises(ValueError, match="int32"):
        cache.match([1, 2**31])
    with pytest.raises(ValueError, match="int32"):
        cache.insert(np.array([-(2**31) - 1], dtype=np.int64), [0])
    with pytest.raises(ValueError, match="int32"):
        cache.match([2**80])
    with pytest.raises(IndexError, match="out of range"):
        cache.insert([1, 2], [4])
    with pytest.raises(IndexError, match="out of range"):
        cache.insert([1, 2], [-1])
    with pytest.raises(IndexError, match="out of range"):
        cache.insert([1, 2], [2**70])
    with pytest.raises(ValueError, match="block ids"):
        cache.insert([1, 2, 3], [0])
    with pytest.raises(ValueError, match="free"):
        cache.insert([1, 2], [0])  # never allocated
    with pytest.raises(ValueError, match="empty"):
        cache.insert([], [])
    with pytest.raises(ValueError, match="not locked"):
        cache.unlock(0)
    with pytest.raises(ValueError, match="not in the cache"):
        cache.lock(12345)
    with pytest.raises(ValueError, match="not in the cache"):
        cache.lock(-1)
    with pytest.raises(ValueError, match="the cache has 4"):
        cache.allocate(5)
    with pytest.raises(ValueError):
        cache.evict(-1)
    with pytest.raises(ValueError, match="backend"):
        PrefixCache(4, 2, backend="rust")
    with pytest.raises(ValueError):
        PrefixCache(0, 2, backend=backend)
    cache.check_invariants()
    assert cache.stats.held_blocks == 0 and cache.stats.free_blocks == 4  # no failed call changed anything


def test_token_arrays_of_any_integer_dtype():
    cache = PrefixCache(8, 4)
    cache.insert(np.arange(6, dtype=np.int64), cache.allocate(2))
    for tokens in (
        np.arange(6, dtype=np.int32),
        np.arange(12, dtype=np.int16)[:6],
        list(range(6)),
        range(6),
        np.arange(12, dtype=np.int32)[::2][:3].repeat(2) * 0 + np.arange(6, dtype=np.int32),
    ):
        assert cache.match(tokens).matched_len == 6
    with pytest.raises(ValueError, match="integer"):
        cache.match([1.5, 2.0])


def test_bookkeeping_bytes_per_cached_token():
    """An MCTS-shaped tree: a long shared prompt, then depth-4 branching-4 steps of 16-32 tokens."""
    rng = random.Random(0)
    cache = PrefixCache(1200, 16)  # about what the tree needs: the per-block arrays scale with the pool
    prompt = [rng.randrange(32_000) for _ in range(1500)]

    def grow(prefix, depth):
        m, blocks = match = cache.match(prefix)
        cache.lock(match.node)
        cache.insert(prefix, blocks[: m // 16] + cache.allocate(math.ceil(len(prefix) / 16) - m // 16))
        cache.unlock(match.node)
        if depth < 4:
            for _ in range(4):
                grow(prefix + [rng.randrange(32_000) for _ in range(rng.randint(16, 32))], depth + 1)

    grow(prompt, 0)
    cached = cache.stats.cached_tokens
    assert cached > 1500 + 300 * 16
    assert cache.stats.evicted_blocks == 0
    assert cache.memory_bytes() / cached <= 32


def test_the_raw_binding_refuses_what_the_wrapper_would():
    raw = _C.RadixCache(4, 2)
    tokens = np.array([1, 2, 3], dtype=np.int32)
    with pytest.raises(IndexError):
        raw.insert(tokens, [0, 7])
    with pytest.raises(ValueError):
        raw.insert(tokens, [0, 1])  # not held
    with pytest.raises(TypeError):
        raw.match(np.array([1, 2], dtype=np.int64))  # the binding takes int32 only
    assert raw.match(tokens) == (0, [], 0)
    assert _C.common_prefix_length(tokens, np.array([1, 2, 9], dtype=np.int32)) == 2


def test_the_binding_reads_what_it_can_and_converts_the_rest():
    cache = PrefixCache(8, 4)
    cache.insert([5, 6, 7, 8, 9, 10], cache.allocate(2))
    same = [
        [5, 6, 7, 8, 9, 10],
        (5, 6, 7, 8, 9, 10),
        array.array("i", [5, 6, 7, 8, 9, 10]),
        np.array([5, 6, 7, 8, 9, 10], dtype=">i4"),  # not native order: converted
        np.arange(5, 17, dtype=np.int32)[::2] * 0 + np.arange(5, 11, dtype=np.int32),
        [5, 6, 7, True + 7, 9, 10],  # a bool among the ints: converted as before, to 8
        [5, 6, np.int64(7), 8, 9, 10],
        [5, 6, 7, 8, 9, 10, 2**31 - 1][:6],
    ]
    for tokens in same:
        assert cache.match(tokens).matched_len == 6, tokens
    assert cache.match([-(2**31), 5]).matched_len == 0
    with pytest.raises(ValueError, match="int32"):
        cache.match([5, 6, 2**31])
    with pytest.raises(ValueError, match="int32"):
        cache.match((5, -(2**31) - 1))
    with pytest.raises(ValueError, match="integer"):
        cache.match(np.array([5.0, 6.0]))
    with pytest.raises(ValueError, match="not an int"):
        cache.insert([1, 2], [0.5])
    with pytest.raises(ValueError, match="not an int"):
        cache.release([True])
    # Block ids as a tuple, an array, numpy scalars: each a fresh block for a new sequence.
    for i, kind in enumerate((tuple, np.array, lambda b: [np.int64(x) for x in b])):
        (held,) = cache.allocate(1)
        inserted = cache.insert([20 + i], kind([held]))
        assert cache.match([20 + i]) == (1, [held]) and cache.match([20 + i]).node == inserted.node
    cache.check_invariants()


def test_a_call_from_inside_a_call_is_refused():
    """A converter runs Python code (here an item's __index__): calling the same cache from there is refused."""
    cache = PrefixCache(8, 4)

    class Sneaky:
        def __index__(self):
            cache.match([1, 2])
            return 1

    with pytest.raises(RuntimeError, match="inside one of its own calls"):
        cache.match([Sneaky(), 2])
    assert cache.match([1, 2]).matched_len == 0  # and the cache still works
    cache.check_invariants()
