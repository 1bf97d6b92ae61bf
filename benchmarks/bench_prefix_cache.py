"""Prefix-cache operations on an MCTS-shaped trace: the C++ tree against the pure-Python reference.

The trace: `--trees` search trees. Each prompt is a shared ~900-token system prompt (tool schemas) plus a query,
1-2k tokens in all; each tree is expanded to depth 4 with 4 children per node, a child adding one answer step of
16-32 tokens. Caching one child is what the transformers backend does: match, lock the matched node, allocate
the blocks the new tokens need, insert, unlock. The pool holds `--num-blocks` blocks (default: about a fifth of
the trace), so least-recently-used trees are evicted as the search moves on.

Only the cache calls are timed (the trace's token arrays are built outside the timer), through the public
`PrefixCache` wrapper: C++ gets int32 numpy arrays, the reference gets Python lists, each its natural input. The
reference runs the same trace (or, with `--reference-trees`, its first trees, to save time); the ratio compares
throughput on the same operations. Bookkeeping bytes per cached token are the C++
cache's own count (`memory_bytes()`) at the end of the full trace.

    python benchmarks/bench_prefix_cache.py                  # 1,000 trees (about 2 minutes on 2 cores)
    python benchmarks/bench_prefix_cache.py --trees 100      # quick
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np

from rftfast.generation import PrefixCache


@dataclass
class Timing:
    seconds: float = 0.0
    operations: int = 0
    tokens: int = 0  # tokens passed to match + insert


def trace(trees: int, seed: int):
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


def cache_sequence(cache: PrefixCache, tokens, timing: Timing) -> None:
    """Cache one sequence the way the generator does; only the cache calls are timed."""
    clock = time.perf_counter
    bs = cache.block_size
    started = clock()
    matched, blocks = match = cache.match(tokens)
    cache.lock(match.node)
    new = cache.allocate(math.ceil(len(tokens) / bs) - matched // bs)
    cache.insert(tokens, blocks[: matched // bs] + new)
    cache.unlock(match.node)
    timing.seconds += clock() - started
    timing.operations += 5
    timing.tokens += 2 * len(tokens)


def run(backend: str, trees: int, num_blocks: int, block_size: int, seed: int) -> tuple[Timing, PrefixCache]:
    cache = PrefixCache(num_blocks, block_size, backend=backend)
    timing = Timing()
    for sequences in trace(trees, seed):
        for tokens in sequences:
            cache_sequence(cache, tokens if backend == "cpp" else tokens.tolist(), timing)
    return timing, cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", type=int, default=1000)
    parser.add_argument("--reference-trees", type=int, default=None, help="default: all trees")
    parser.add_argument("--num-blocks", type=int, default=200_000)
    parser.add_argument("--block-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    reference_trees = min(args.reference_trees or args.trees, args.trees)

    cpp_same, cache = run("cpp", reference_trees, args.num_blocks, args.block_size, args.seed)
    python_same, _ = run("python", reference_trees, args.num_blocks, args.block_size, args.seed)
    cpp_full = cpp_same
    if reference_trees < args.trees:
        cpp_full, cache = run("cpp", args.trees, args.num_blocks, args.block_size, args.seed)
    stats = cache.stats

    def row(name, timing):
        rate = timing.operations / timing.seconds
        return (
            f"{name:<34} {timing.operations:>10,} {timing.seconds:>9.3f} {rate:>12,.0f} "
            f"{timing.tokens / timing.seconds / 1e6:>10.1f}"
        )

    print(
        f"MCTS trace: depth 4, branching 4, prompts 1-2k tokens (900 shared), steps 16-32 tokens; "
        f"block_size {args.block_size}, {args.num_blocks:,} blocks"
    )
    print(f"{'run':<34} {'ops':>10} {'seconds':>9} {'ops/s':>12} {'Mtok/s':>10}")
    print(row(f"python reference, {reference_trees} trees", python_same))
    print(row(f"C++, same {reference_trees} trees", cpp_same))
    if cpp_full is not cpp_same:
        print(row(f"C++, {args.trees} trees", cpp_full))
    ratio = (cpp_same.operations / cpp_same.seconds) / (python_same.operations / python_same.seconds)
    print(f"\nC++ / Python throughput on the same {reference_trees} trees: {ratio:.1f}x (target >= 20x)")
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
