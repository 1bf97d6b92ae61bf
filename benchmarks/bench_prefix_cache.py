"""Prefix-cache operations on an MCTS-shaped trace: the C++ tree against plain Python radix trees and the reference.

The trace: `--trees` search trees. Each prompt is a shared ~900-token system prompt (tool schemas) plus a query,
1-2k tokens in all; each tree is expanded to depth 4 with 4 children per node, a child adding one answer step of
16-32 tokens. Caching one child is what the transformers backend does (the "protocol"): match, lock the matched
node, allocate the blocks the new tokens need, build the block layout, insert, unlock. The pool holds
`--num-blocks` blocks (default: about a fifth of the trace), so least-recently-used trees are evicted as the search
moves on.

Runs, on the same trace:

    plain             a plain pure-Python radix tree: edges as token lists, children keyed by first token; an edge
                      is compared as a list slice (at C speed), token by token only where the sequence leaves it.
                      match + insert, no blocks. The baseline of the targets.
    plain, token loop the same tree comparing every edge token by token (zip), as SGLang's Python RadixCache does
    reference         rftfast's pure-Python PrefixCache (backend="python"): blocks, locks, LRU eviction, the protocol
    C++ arrays        PrefixCache (C++) given int32 numpy arrays
    C++ lists         PrefixCache (C++) given Python lists of ints

Only the cache calls are timed. Each sequence's tokens are made just before its calls (an array copy, or
`tolist()`), outside the timer, as a caller that has just produced them has them. "match+insert" is the time of
those two calls, what the plain trees do; "protocol" is the C++ runs' whole sequence of calls. Ratios compare the
same trees: the C++ runs are timed tree by tree, so their time over the baselines' first trees is known.

Exactness: every C++ result (matched length, block ids, copy-on-write) must equal the reference's on the trees the
reference runs, the list run's results (node handles too) the array run's on every tree, and the plain tree's
matched lengths the C++ ones until the pool first evicts. Bookkeeping bytes per cached token are the C++ cache's
own count (`memory_bytes()`) at the end of the full trace. Every run of a kind makes the same calls on the same
trace; each tree counts with its least time over the `--repeat` runs (a shared machine only adds time).

    python benchmarks/bench_prefix_cache.py                  # 1,000 trees, 3 repeats (about 3 minutes on 2 cores)
    python benchmarks/bench_prefix_cache.py --trees 100 --repeat 1   # quick
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from rftfast.generation import PrefixCache


def trace(trees: int, seed: int) -> Iterator[list[np.ndarray]]:
    """Yield, per tree, the token sequences to cache in expansion order (prompt first, then children by depth)."""
    rng = np.random.default_rng(seed)
    system = rng.integers(0, 32_000, 900, dtype=np.int32)
    for _ in range(trees):
        prompt = np.concatenate([system, rng.integers(0, 32_000, int(rng.integers(100, 1100)), dtype=np.int32)])
        sequences, frontier = [prompt], [prompt]
        for _depth in range(4):
            frontier = [
                np.concatenate([parent, rng.integers(0, 32_000, int(rng.integers(16, 33)), dtype=np.int32)])
                for parent in frontier
                for _ in range(4)
            ]
            sequences += frontier
        yield sequences


# ---------------------------------------------------------------------------------------------------------------
# The plain pure-Python radix tree
# ---------------------------------------------------------------------------------------------------------------


class _Edge:
    __slots__ = ("tokens", "children")

    def __init__(self, tokens: list[int]) -> None:
        self.tokens = tokens
        self.children: dict[int, _Edge] = {}


def _slice_prefix(edge: list[int], tokens: list[int], pos: int) -> int:
    """How far `tokens[pos:]` runs along `edge`: one slice comparison when it runs the whole edge."""
    n = len(edge)
    if tokens[pos : pos + n] == edge:
        return n
    k, n = 0, min(n, len(tokens) - pos)
    while k < n and edge[k] == tokens[pos + k]:
        k += 1
    return k


def _loop_prefix(edge: list[int], tokens: list[int], pos: int) -> int:
    """The same, token by token (SGLang's `_key_match`)."""
    k = 0
    for a, b in zip(edge, tokens[pos : pos + len(edge)]):
        if a != b:
            break
        k += 1
    return k


class PlainRadixTree:
    """A radix tree over token lists with nothing but match and insert: what a Python project writes first."""

    def __init__(self, prefix: Callable[[list[int], list[int], int], int] = _slice_prefix) -> None:
        self.root = _Edge([])
        self.prefix = prefix

    def match(self, tokens: list[int]) -> int:
        """Length of the longest cached prefix of `tokens`."""
        node, pos, n, prefix = self.root, 0, len(tokens), self.prefix
        while pos < n:
            child = node.children.get(tokens[pos])
            if child is None:
                break
            k = prefix(child.tokens, tokens, pos)
            pos += k
            if k < len(child.tokens):
                break
            node = child
        return pos

    def insert(self, tokens: list[int]) -> None:
        node, pos, n, prefix = self.root, 0, len(tokens), self.prefix
        while pos < n:
            child = node.children.get(tokens[pos])
            if child is None:
                node.children[tokens[pos]] = _Edge(tokens[pos:])
                return
            edge = child.tokens
            k = prefix(edge, tokens, pos)
            if k < len(edge):  # split the edge where the sequence leaves it
                upper = _Edge(edge[:k])
                child.tokens = edge[k:]
                upper.children[child.tokens[0]] = child
                node.children[tokens[pos]] = upper
                child = upper
            pos += k
            node = child


# ---------------------------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------------------------


SEQUENCES_PER_TREE = sum(4**depth for depth in range(5))  # the prompt and four levels of four children


@dataclass
class Run:
    """Cumulative seconds and tokens after each tree; with `check`, per-sequence results to compare runs by."""

    match_insert: list[float] = field(default_factory=list)
    protocol: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # passed to match + insert
    matched: list[int] = field(default_factory=list)  # matched length per sequence
    digests: list[tuple[int, int]] = field(default_factory=list)  # per sequence: hash of the results, without nodes
    first_eviction: int | None = None  # the first sequence after which the C++ pool had evicted

    def seconds(self, trees: int, kind: str = "match_insert") -> float:
        return getattr(self, kind)[trees - 1]

    def per_sequence_us(self, trees: int, kind: str = "match_insert") -> float:
        return 1e6 * self.seconds(trees, kind) / (trees * SEQUENCES_PER_TREE)


def run_plain(trees: int, seed: int, prefix, check: bool) -> Run:
    tree, run, clock = PlainRadixTree(prefix), Run(), time.perf_counter
    seconds = tokens = 0
    for sequences in trace(trees, seed):
        for sequence in sequences:
            seq = sequence.tolist()
            t0 = clock()
            matched = tree.match(seq)
            tree.insert(seq)
            seconds += clock() - t0
            tokens += 2 * len(seq)
            if check:
                run.matched.append(matched)
        run.match_insert.append(seconds)
        run.protocol.append(seconds)
        run.tokens.append(tokens)
    return run


def run_cache(backend: str, lists: bool, trees: int, num_blocks: int, block_size: int, seed: int, check: bool):
    """The protocol on `PrefixCache(backend)`, tokens as Python lists or int32 arrays; returns (Run, cache)."""
    cache, run, clock, bs = PrefixCache(num_blocks, block_size, backend=backend), Run(), time.perf_counter, block_size
    match_insert = protocol = tokens = 0
    for sequences in trace(trees, seed):
        for sequence in sequences:
            seq = sequence.tolist() if lists else sequence.copy()
            t0 = clock()
            matched, blocks = match = cache.match(seq)
            t1 = clock()
            cache.lock(match.node)
            new = cache.allocate(math.ceil(len(seq) / bs) - matched // bs)
            layout = blocks[: matched // bs] + new
            t2 = clock()
            inserted = cache.insert(seq, layout)
            t3 = clock()
            cache.unlock(match.node)
            t4 = clock()
            match_insert += (t1 - t0) + (t3 - t2)
            protocol += t4 - t0
            tokens += 2 * len(seq)
            if check:
                results = (matched, tuple(blocks), inserted.copy)
                run.matched.append(matched)
                run.digests.append((hash(results), hash((results, match.node, inserted.node))))
                if backend == "cpp" and run.first_eviction is None and cache.stats.evicted_blocks:
                    run.first_eviction = len(run.matched) - 1
        run.match_insert.append(match_insert)
        run.protocol.append(protocol)
        run.tokens.append(tokens)
    return run, cache


def exactness_errors(runs: dict[str, Run]) -> dict[str, int]:
    """Sequences whose results differ: C++ against the reference (node handles aside: they differ by design), lists
    against arrays (handles too), the plain tree's matched lengths against C++ until the pool first evicts."""
    arrays, lists, reference, plain = runs["C++ arrays"], runs["C++ lists"], runs["reference"], runs["plain"]
    until = min(len(plain.matched), len(arrays.matched) if arrays.first_eviction is None else arrays.first_eviction)
    return {
        f"C++ vs reference ({len(reference.digests):,} sequences)": sum(
            a[0] != r[0] for a, r in zip(arrays.digests, reference.digests)
        ),
        f"C++ lists vs arrays ({len(lists.digests):,})": sum(a != b for a, b in zip(lists.digests, arrays.digests)),
        f"plain vs C++ matched lengths ({until:,}, before the first eviction)": sum(
            p != a for p, a in zip(plain.matched[:until], arrays.matched)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", type=int, default=1000)
    parser.add_argument("--baseline-trees", type=int, default=200, help="trees the plain Python trees run")
    parser.add_argument("--reference-trees", type=int, default=100, help="trees the reference cache runs")
    parser.add_argument("--num-blocks", type=int, default=200_000)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of everything; each tree's least time counts")
    args = parser.parse_args()
    base_trees = min(args.baseline_trees, args.trees)
    ref_trees = min(args.reference_trees, args.trees)
    cache_args = (args.num_blocks, args.block_size, args.seed)

    repeats: list[dict[str, Run]] = []
    for i in range(args.repeat):
        check = i == 0  # results are compared on the first repeat
        runs = {
            "plain": run_plain(base_trees, args.seed, _slice_prefix, check),
            "plain, token loop": run_plain(base_trees, args.seed, _loop_prefix, check),
            "reference": run_cache("python", True, ref_trees, *cache_args, check)[0],
        }
        runs["C++ arrays"], cache = run_cache("cpp", False, args.trees, *cache_args, check)
        runs["C++ lists"], _ = run_cache("cpp", True, args.trees, *cache_args, check)
        repeats.append(runs)
    errors = exactness_errors(repeats[0])
    stats = cache.stats

    def med(name: str, trees: int, kind: str = "match_insert") -> float:
        """Seconds over the first `trees` trees, each tree at its least time over the repeats."""
        per_tree = [np.diff(getattr(r[name], kind)[:trees], prepend=0.0) for r in repeats]
        return float(np.minimum.reduce(per_tree).sum())

    def us(name: str, trees: int, kind: str = "match_insert") -> float:
        return 1e6 * med(name, trees, kind) / (trees * SEQUENCES_PER_TREE)

    print(
        f"MCTS trace: depth 4, branching 4, prompts 1-2k tokens (900 shared), steps 16-32 tokens; "
        f"block_size {args.block_size}, {args.num_blocks:,} blocks; each tree's least time of {args.repeat} run(s)"
    )
    print("| run | trees | match+insert µs/seq | protocol µs/seq | Mtok/s (match+insert) |")
    print("|---|---:|---:|---:|---:|")
    for name, trees in [
        ("plain", base_trees),
        ("plain, token loop", base_trees),
        ("reference", ref_trees),
        ("C++ arrays", args.trees),
        ("C++ lists", args.trees),
    ]:
        protocol = f"{us(name, trees, 'protocol'):.2f}" if not name.startswith("plain") else "–"
        mtok = repeats[0][name].tokens[trees - 1] / med(name, trees) / 1e6
        print(f"| {name} | {trees} | {us(name, trees):.2f} | {protocol} | {mtok:.1f} |")

    def speedup(base: str, name: str, kind: str) -> float:
        return med(base, base_trees) / med(name, base_trees, kind)

    print(f"\nC++ against the plain Python radix tree on the same {base_trees} trees (target >= 50x on match+insert):")
    for kind, label in (("match_insert", "match+insert"), ("protocol", "whole protocol")):
        print(
            f"  {label}: arrays {speedup('plain', 'C++ arrays', kind):.1f}x, lists "
            f"{speedup('plain', 'C++ lists', kind):.1f}x  (token-loop tree: arrays "
            f"{speedup('plain, token loop', 'C++ arrays', kind):.1f}x, lists "
            f"{speedup('plain, token loop', 'C++ lists', kind):.1f}x)"
        )
    lists_mi = med("C++ lists", args.trees) / med("C++ arrays", args.trees)
    lists_pr = med("C++ lists", args.trees, "protocol") / med("C++ arrays", args.trees, "protocol")
    print(
        f"C++ lists / arrays time, {args.trees} trees: match+insert {lists_mi:.2f}x, protocol {lists_pr:.2f}x "
        "(target <= 1.5x)"
    )
    ref = med("reference", ref_trees, "protocol") / med("C++ arrays", ref_trees, "protocol")
    print(f"C++ (arrays) / reference throughput on the same {ref_trees} trees, protocol: {ref:.1f}x (target >= 20x)")
    print("exactness errors: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
    print(
        f"after {args.trees} trees: {stats.nodes:,} nodes, {stats.cached_tokens:,} cached tokens, "
        f"{stats.cached_blocks:,} cached blocks, {stats.evicted_blocks:,} blocks evicted, "
        f"hit rate {stats.hit_rate:.3f}"
    )
    print(
        f"bookkeeping: {cache.memory_bytes():,} bytes = {cache.memory_bytes() / stats.cached_tokens:.1f} bytes per "
        f"cached token (target <= 32)"
    )


if __name__ == "__main__":
    main()
