"""Search bookkeeping per simulation: the numba forest against a plain-Python object tree, same rules, same trace.

A simulation is one selected leaf, its expansion (1 to `max_children` children) and the backup of each child.
Both implementations replay one random trace (arity, priors, values and terminal flags are a function of the
tree and the node being expanded, so identical trees see identical inputs), grow the forest to `--nodes`
nodes in total, and end holding identical visits and values (checked). Bookkeeping is the forest's work:
selection, expansion and backup; producing the trace's children (the generator's part) is not timed.

    python benchmarks/bench_mcts.py                 # 100k nodes; one big tree, and many small trees
    python benchmarks/bench_mcts.py --nodes 20000   # quicker
    python benchmarks/bench_mcts.py --search        # a real search: tiny Llama, transformers backend, tool world

`--search` runs `rftfast.mcts.search` on tool-world records with a small randomly initialised Llama through
`TransformersGenerator` (CPU) and prints where the wall time went: generation, rewards, and the search's own
bookkeeping (selection, expansion, backup, building requests, decoding node texts).

The numba forest runs two ways: three calls a round (`select_leaves`, `expand`, `backup`), and one call a round
(`Forest.round`: expand and back up this round's children, select the next round's leaves, arguments checked
once). The last layout is the search's shape for many records: one leaf per tree, `--max-children` children each.

"per sim (last 10%)" is measured over the simulations that take the forest from 90% to 100% of `--nodes`,
that is at the full size; "per sim (all)" averages the whole growth. Every run of a layout makes the same rounds;
each round counts with its least time over `--repeat` runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rftfast.mcts import Forest
from rftfast.mcts.forest import Expansion
from rftfast.mcts.reference import ReferenceForest


class Trace:
    """Arity, priors, values and terminal flags of the children of node `n` of tree `t`, fixed in advance."""

    def __init__(
        self, num_trees: int, capacity: int, max_children: int, p_terminal: float, seed: int = 0, min_children: int = 1
    ):
        rng = np.random.default_rng(seed)
        self.max_children = max_children
        self.arity = rng.integers(min_children, max_children + 1, (num_trees, capacity))
        priors = rng.random((num_trees, capacity, max_children)) + 0.05
        self.priors = priors / priors.sum(-1, keepdims=True)
        self.values = rng.uniform(-1.0, 1.0, (num_trees, capacity, max_children))
        self.terminal = rng.random((num_trees, capacity, max_children)) < p_terminal
        self.slots = np.arange(max_children)
        # Python lists for the object-tree side, so it is not charged for numpy scalar access.
        self.arity_l, self.priors_l = self.arity.tolist(), self.priors.tolist()
        self.values_l, self.terminal_l = self.values.tolist(), self.terminal.tolist()

    def arrays(self, tree_ids: np.ndarray, node_ids: np.ndarray):
        arity = self.arity[tree_ids, node_ids]
        keep = self.slots[None, :] < arity[:, None]
        trees = np.repeat(tree_ids, arity)
        parents = np.repeat(node_ids, arity)
        return (
            trees,
            parents,
            self.priors[tree_ids, node_ids][keep],
            self.values[tree_ids, node_ids][keep],
            self.terminal[tree_ids, node_ids][keep],
        )

    def lists(self, tree_ids: list[int], node_ids: list[int]):
        trees, parents, priors, values, terminal = [], [], [], [], []
        for t, n in zip(tree_ids, node_ids):
            a = self.arity_l[t][n]
            trees += [t] * a
            parents += [n] * a
            priors += self.priors_l[t][n][:a]
            values += self.values_l[t][n][:a]
            terminal += self.terminal_l[t][n][:a]
        return trees, parents, priors, values, terminal


def grow(forest, batch, num_trees: int, nodes: int, k: int, args) -> tuple[object, list]:
    """Grow `forest` to `nodes` nodes on the trace with three calls a round (select_leaves, expand, backup);
    `batch(tree_ids, node_ids)` plays the generator.

    Every implementation runs this loop (or `grow_one_call`), so only the forest's own work differs; the
    generator's part (producing the trace's children) is excluded from the timed seconds.
    """
    log = []  # (seconds, simulations, total nodes after the round)
    total = num_trees
    while total < nodes:
        start = time.perf_counter()
        tree_ids, node_ids = forest.select_leaves(k, args.c, args.rule, args.virtual_loss, args.max_depth)
        selected = time.perf_counter()
        if not len(tree_ids):
            break
        trees, parents, priors, values, terminal = batch(tree_ids, node_ids)
        generated = time.perf_counter()
        children = forest.expand(trees, parents, priors, values, terminal)
        forest.backup(trees, children, values)
        total += len(children)
        log.append((selected - start + time.perf_counter() - generated, len(tree_ids), total))
    return forest, log


def grow_one_call(forest: Forest, batch, num_trees: int, nodes: int, k: int, args) -> tuple[Forest, list]:
    """`grow` with `Forest.round`: one call per round expands and backs up the round's children and selects the
    next round's leaves (the first round's are selected by `select_leaves`). Same trees, same order of work."""
    log = []
    total = num_trees
    start = time.perf_counter()
    tree_ids, node_ids = forest.select_leaves(k, args.c, args.rule, args.virtual_loss, args.max_depth)
    seconds = time.perf_counter() - start
    while total < nodes and len(tree_ids):
        simulations = len(tree_ids)
        new = Expansion(*batch(tree_ids, node_ids))
        start = time.perf_counter()
        children, tree_ids, node_ids = forest.round(
            new,
            k=k if total + len(new.tree_ids) < nodes else 0,  # the last round selects nothing
            c=args.c,
            rule=args.rule,
            virtual_loss=args.virtual_loss,
            max_depth=args.max_depth,
        )
        seconds += time.perf_counter() - start
        total += len(children)
        log.append((seconds, simulations, total))
        seconds = 0.0
    return forest, log


def run_numba(trace: Trace, num_trees: int, nodes: int, k: int, args, one_call: bool = False) -> tuple[Forest, list]:
    forest = Forest(num_trees, capacity=1024, max_children=trace.max_children, backup=args.backup)
    return (grow_one_call if one_call else grow)(forest, trace.arrays, num_trees, nodes, k, args)


def run_python(trace: Trace, num_trees: int, nodes: int, k: int, args) -> tuple[ReferenceForest, list]:
    forest = ReferenceForest(num_trees, trace.max_children, backup=args.backup)
    return grow(forest, trace.lists, num_trees, nodes, k, args)


def per_sim_us(log: list, nodes: int, tail: float) -> float:
    rows = [row for row in log if row[2] > (1 - tail) * nodes] if tail < 1 else log
    return 1e6 * sum(r[0] for r in rows) / max(1, sum(r[1] for r in rows))


def best_rounds(logs: list[list]) -> list:
    """One log from several runs of the same trace: each round's least time (a shared machine only adds time)."""
    assert all(len(log) == len(logs[0]) for log in logs), "runs of one trace make the same rounds"
    return [(min(rows[i][0] for rows in logs), *logs[0][i][1:]) for i in range(len(logs[0]))]


def check_same(forest: Forest, ref: ReferenceForest) -> None:
    for t, nodes in enumerate(ref.trees):
        n = len(nodes)
        assert forest.num_nodes[t] == n, "different trees"
        assert forest.visits[t, :n].tolist() == [x.visits for x in nodes], "different visits"
        assert forest.value_sum[t, :n].tolist() == [x.value_sum for x in nodes], "different values"


def run_search(args) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from rftfast.data.chat import END, answer_content, fallback_prompt
    from rftfast.data.toolworld import generate
    from rftfast.generation import TransformersGenerator
    from rftfast.mcts import PairConfig, SearchConfig, ast_reward, search

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    records = generate(args.records, seed=args.seed)
    # A byte-level BPE trained on the records themselves, and a small Llama on top (random weights: the timing
    # does not depend on what it writes, only on how much).
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer, bpe.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    specials = ["<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = [fallback_prompt(r.messages, r.tools) + answer_content(r) + END for r in records]
    bpe.train_from_iterator(corpus, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|end|>", pad_token="<pad>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    model = LlamaForCausalLM(config)
    generator = TransformersGenerator(model, tokenizer, prefix_cache=True)
    search_config = SearchConfig(
        samples_per_expansion=args.samples,
        rounds=args.rounds,
        leaves_per_tree=args.leaves,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        progress=False,
        pairs=PairConfig(min_gap=0.0, accept_value=-1.0),
    )
    search(records[:2], generator, ast_reward, SearchConfig(rounds=1, progress=False))  # load the kernels
    result = search(records, generator, ast_reward, search_config)
    st = result.stats
    print(
        f"search: {len(records)} records, {st.rounds} rounds, {st.simulations} simulations, {st.nodes} nodes, "
        f"{st.pairs} pairs; prefill reused {st.prefill_reused} / computed {st.prefill_computed} tokens"
    )
    print("| part | seconds | share of wall |")
    print("|---|---:|---:|")
    for name, seconds in [
        ("wall", st.wall_seconds),
        ("generator", st.generator_seconds),
        ("reward (ast)", st.reward_seconds),
        ("bookkeeping", st.bookkeeping_seconds),
        ("  of it: forest kernels", st.forest_seconds),
        ("pair extraction", st.pairs_seconds),
    ]:
        print(f"| {name} | {seconds:.3f} | {seconds / st.wall_seconds:.2%} |")
    print(f"bookkeeping per simulation: {st.bookkeeping_us_per_simulation:.1f} µs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--max-children", type=int, default=4)
    parser.add_argument("--rule", default="uct", choices=["uct", "puct"])
    parser.add_argument("--backup", default="mean", choices=["mean", "sum"])
    parser.add_argument("--c", type=float, default=1.0)
    parser.add_argument("--virtual-loss", type=float, default=1.0)
    parser.add_argument("--max-depth", type=int, default=None)
    parser.add_argument("--p-terminal", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per implementation; the best is reported")
    parser.add_argument("--search", action="store_true", help="time a real search instead (see above)")
    parser.add_argument("--records", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--leaves", type=int, default=2)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.search:
        run_search(args)
        return

    layouts = [  # name, trees, leaves per tree per round, fewest children per expansion (the most: --max-children)
        ("1 tree, 16 leaves/round", 1, 16, 1),
        ("64 trees, 4 leaves/round", 64, 4, 1),
        ("1000 trees, 1 leaf/round", 1000, 1, 1),
        (f"64 trees, 1 leaf/round, {args.max_children} children", 64, 1, args.max_children),
    ]
    print(
        f"bookkeeping per simulation, {args.nodes} nodes in all, rule={args.rule}, backup={args.backup}, "
        f"arity 1..{args.max_children} unless the layout says; each round's least time of {args.repeat} runs"
    )
    print(
        "| layout | sims | numba 3 calls µs/sim (all / last 10%) | numba one call µs/sim (all / last 10%) | "
        "python µs/sim (all / last 10%) | speed-up, last 10% (3 calls / one call) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, num_trees, k, min_children in layouts:
        capacity = args.nodes + 64
        trace = Trace(
            num_trees,
            min(capacity, 2 * args.nodes // num_trees + 64),
            args.max_children,
            args.p_terminal,
            args.seed,
            min_children,
        )
        for one_call in (False, True):  # compile (or load the cache) first
            run_numba(trace, num_trees, min(args.nodes, 2000), k, args, one_call)
        # `--repeat` runs of each; each round's least time counts: the machine may be shared, noise only adds time.
        runs = {
            "3 calls": [run_numba(trace, num_trees, args.nodes, k, args) for _ in range(args.repeat)],
            "one call": [run_numba(trace, num_trees, args.nodes, k, args, True) for _ in range(args.repeat)],
            "python": [run_python(trace, num_trees, args.nodes, k, args) for _ in range(args.repeat)],
        }
        for kind in ("3 calls", "one call"):
            check_same(runs[kind][0][0], runs["python"][0][0])
        sims = sum(r[1] for r in runs["3 calls"][0][1])
        us = {}
        for kind, done in runs.items():
            log = best_rounds([log for _, log in done])
            us[kind] = [per_sim_us(log, args.nodes, tail) for tail in (1.0, 0.1)]
        three, one, py = us["3 calls"], us["one call"], us["python"]
        print(
            f"| {name} | {sims} | {three[0]:.2f} / {three[1]:.2f} | {one[0]:.2f} / {one[1]:.2f} | "
            f"{py[0]:.1f} / {py[1]:.1f} | {py[1] / three[1]:.0f}× / {py[1] / one[1]:.0f}× |"
        )


if __name__ == "__main__":
    main()
