"""The search: all trees in lockstep rounds, one batched generator call per round, then step-level pairs.

One tree per record; its root is the record's prompt with an empty answer. A round:

    select up to k leaves in every tree (compiled, with virtual loss)
      → one `generator.expand` call: n sampled continuations per leaf, each cut at the end of the next answer
        step (`stop_at_step`); the prefix is the prompt ids + the spans of the leaf's path, never re-tokenised
      → the reward of each new node, on its whole answer so far (decoded once per node)
      → expand (one child per distinct continuation), back up the rewards and select the next round's leaves
        (compiled, one `Forest.round` call)

Steps are cut in the model's call format (`call_format`; by default its chat template's, see
`rftfast.mcts.pairs.answer_format`): the generator stops children there, the ground truth is cut there, and the
default reward reads answers in it.

A child is terminal when it finished the answer (finish_reason "stop") or reached `max_depth`; a leaf for which
the generator produced nothing is made terminal. After the last round, `extract_pairs` turns siblings into
preference pairs. Priors: the children's probabilities under the policy, exp(mean token log-prob), times how
many samples wrote the same continuation, normalised over the siblings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rftfast.data.chat import render_example
from rftfast.data.record import Record
from rftfast.generation.base import Child, ExpandRequest, Generator
from rftfast.mcts.forest import BACKUPS, RULES, Expansion, Forest
from rftfast.mcts.pairs import Pair, PairConfig, answer_format, extract_pairs, ground_truth
from rftfast.mcts.rewards import ast_reward_in

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class SearchConfig:
    """How the trees grow: `rounds` rounds of `leaves_per_tree` leaves × `samples_per_expansion` samples."""

    samples_per_expansion: int = 4
    rounds: int = 8
    leaves_per_tree: int = 1
    max_depth: int = 16
    max_new_tokens: int = 48  # per step
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    c: float = 1.0  # exploration constant
    rule: str = "uct"  # "uct" (iTool) or "puct" (AlphaZero)
    backup: str = "mean"  # "mean" or "sum" (iTool's summed values)
    virtual_loss: float = 1.0
    ground_truth_chosen: bool = False  # on the ground truth's path, its next step is the chosen one
    use_chat_template: bool | None = None  # as `render_example`
    progress: bool = True
    pairs: PairConfig = field(default_factory=PairConfig)

    def __post_init__(self) -> None:
        """A ValueError naming the first option out of range (`name: expected ..., got ...`)."""
        for name, low in (("samples_per_expansion", 1), ("rounds", 0), ("leaves_per_tree", 1), ("max_depth", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"{name}: expected >= {low}, got {getattr(self, name)!r}")
        for name, choices in (("rule", RULES), ("backup", BACKUPS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name}: expected one of {tuple(choices)}, got {getattr(self, name)!r}")


@dataclass
class SearchStats:
    """Counts and where the time went. `bookkeeping_seconds` is everything but generation, rewards and pair
    extraction (selection, expansion, backup, building requests, decoding); `forest_seconds` is its compiled
    part."""

    rounds: int = 0
    simulations: int = 0  # leaves expanded
    nodes: int = 0  # in all trees, roots included
    terminal_nodes: int = 0
    samples: int = 0  # continuations the generator returned
    duplicate_samples: int = 0  # of them, repeats of a sibling
    pairs: int = 0
    wall_seconds: float = 0.0
    generator_seconds: float = 0.0
    reward_seconds: float = 0.0
    bookkeeping_seconds: float = 0.0
    forest_seconds: float = 0.0
    pairs_seconds: float = 0.0
    prefill_computed: int = 0
    prefill_reused: int = 0

    @property
    def bookkeeping_fraction(self) -> float:
        return self.bookkeeping_seconds / self.wall_seconds if self.wall_seconds else 0.0

    @property
    def bookkeeping_us_per_simulation(self) -> float:
        return 1e6 * self.bookkeeping_seconds / self.simulations if self.simulations else 0.0


@dataclass
class SearchResult:
    """The pairs, the searched forest, and the stats. Iterating or `len()` goes over the pairs."""

    pairs: list[Pair]
    forest: Forest
    prompts: list[list[int]]
    record_ids: list[str]
    stats: SearchStats
    texts: dict[tuple[int, int], str]  # (tree, node) -> the node's answer so far, decoded
    call_format: str = "pythonic"  # the format the answers' steps were cut in

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)


RewardFn = Callable[[Record, str, bool], float]


def search(
    records: Sequence[Record],
    generator: Generator,
    reward: RewardFn | None = None,
    config: SearchConfig = SearchConfig(),
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    call_format: str | None = None,
) -> SearchResult:
    """Search every record's tree in lockstep and return the step-level pairs (see the module docstring).

    `generator` follows `rftfast.generation.base.Generator`; `tokenizer` (default: `generator.tokenizer`)
    renders prompts and decodes answers. `reward(record, answer_text, complete)` scores each new node (default:
    `ast_reward` in the answers' format; a reward passed reads the answers in whatever format it was made for).
    `call_format`: the format the model writes its calls in ("pythonic", "json", "hermes"; default: its chat
    template's, pythonic under the fallback template).
    """
    start = time.perf_counter()
    tokenizer = tokenizer if tokenizer is not None else getattr(generator, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("search needs a tokenizer: pass tokenizer=..., or use a generator with .tokenizer")
    records = list(records)
    if not records:
        raise ValueError("search: no records")
    call_format = answer_format(tokenizer, config.use_chat_template, call_format)
    reward = reward if reward is not None else ast_reward_in(call_format)
    prompts = [
        render_example(r, tokenizer, use_chat_template=config.use_chat_template, call_format=call_format).prompt_ids
        for r in records
    ]
    n = config.samples_per_expansion
    per_tree = 1 + config.rounds * config.leaves_per_tree * n
    forest = Forest(len(records), capacity=min(per_tree, 1024), max_children=n, backup=config.backup)
    stats = SearchStats()
    texts: dict[tuple[int, int], str] = {}
    prefill_before = _prefill(generator)
    timer = _Timer()

    bar = _progress(config)
    select = dict(c=config.c, rule=config.rule, virtual_loss=config.virtual_loss, max_depth=config.max_depth)
    with timer("forest"):
        tree_ids, leaf_ids = forest.select_leaves(config.leaves_per_tree, **select)
    for round_index in range(config.rounds):
        if not len(tree_ids):
            break
        with timer("bookkeeping"):
            leaves = [(int(t), int(leaf)) for t, leaf in zip(tree_ids, leaf_ids)]
            answers = [forest.path_tokens(t, leaf).tolist() for t, leaf in leaves]
            requests = [
                _request(prompts[t], answer, config, t, leaf, call_format) for (t, leaf), answer in zip(leaves, answers)
            ]
        with timer("generator"):
            outputs = generator.expand(requests)
        if len(outputs) != len(requests):
            raise RuntimeError(f"generator.expand returned {len(outputs)} results for {len(requests)} requests")
        new = _NewChildren()
        depths = forest.depth
        for (t, leaf), answer, children in zip(leaves, answers, outputs):
            with timer("bookkeeping"):
                distinct = _distinct(children, stats)
                if not distinct:
                    new.dead.append((t, leaf))
                    continue
                depth = int(depths[t, leaf]) + 1
                priors = _priors(distinct)
                child_texts = [
                    tokenizer.decode(answer + list(c.token_ids), skip_special_tokens=True) for c, _ in distinct
                ]
            with timer("reward"):
                values = [
                    float(reward(records[t], text, c.finish_reason == "stop"))
                    for (c, _), text in zip(distinct, child_texts)
                ]
            for (c, _), prior, value, text in zip(distinct, priors, values, child_texts):
                new.add(
                    t,
                    leaf,
                    prior,
                    value,
                    c.finish_reason == "stop" or depth >= config.max_depth,
                    list(c.token_ids),
                    text,
                )
        with timer("forest"):  # this round's children in, the next round's leaves out (none after the last)
            next_k = 0 if round_index == config.rounds - 1 else config.leaves_per_tree
            child_ids, tree_ids, leaf_ids = forest.round(new.expansion(), dead=new.dead_leaves(), k=next_k, **select)
        with timer("bookkeeping"):
            texts.update(zip(zip(new.trees, child_ids.tolist()), new.texts))
            stats.rounds = round_index + 1
            stats.simulations += len(leaves)
            stats.terminal_nodes += sum(new.terminal)
            bar.update(1)
            bar.set_postfix(nodes=int(forest.num_nodes.sum()), refresh=False)
    bar.close()

    with timer("pairs"):
        record_ids = [r.id or str(i) for i, r in enumerate(records)]
        truth = None
        if config.ground_truth_chosen:
            truth = [ground_truth(r, tokenizer, config.use_chat_template, call_format) for r in records]
        pairs = extract_pairs(forest, prompts, config.pairs, record_ids=record_ids, truth=truth)
    stats.nodes = int(forest.num_nodes.sum())
    stats.pairs = len(pairs)
    stats.generator_seconds = timer.seconds["generator"]
    stats.reward_seconds = timer.seconds["reward"]
    stats.forest_seconds = timer.seconds["forest"]
    stats.bookkeeping_seconds = timer.seconds["bookkeeping"] + timer.seconds["forest"]
    stats.pairs_seconds = timer.seconds["pairs"]
    stats.wall_seconds = time.perf_counter() - start
    prefill_after = _prefill(generator)
    stats.prefill_computed = prefill_after[0] - prefill_before[0]
    stats.prefill_reused = prefill_after[1] - prefill_before[1]
    return SearchResult(pairs, forest, prompts, record_ids, stats, texts, call_format)


# ---------------------------------------------------------------------------------------------------------------
# Pieces of a round
# ---------------------------------------------------------------------------------------------------------------


def _request(
    prompt: list[int], answer: list[int], config: SearchConfig, tree: int, node: int, call_format: str
) -> ExpandRequest:
    return ExpandRequest(
        prefix_ids=tuple(prompt + answer),
        n=config.samples_per_expansion,
        max_new_tokens=config.max_new_tokens,
        stop_at_step=True,
        temperature=config.temperature,
        top_p=config.top_p,
        seed=_seed(config.seed, tree, node),
        answer_start=len(prompt),
        call_format=call_format,
    )


def _seed(base: int, tree: int, node: int) -> int:
    """A sampling seed per (search seed, tree, node): reruns sample the same, leaves sample independently."""
    return ((base * 1_000_003 + tree) * 1_000_003 + node) % (2**31 - 1)


def _distinct(children: Sequence[Child], stats: SearchStats) -> list[tuple[Child, int]]:
    """Siblings with identical tokens merged (first kept, with its count); empty non-final samples dropped."""
    seen: dict[tuple[int, ...], int] = {}
    out: list[list] = []
    for child in children:
        stats.samples += 1
        ids = tuple(child.token_ids)
        if not ids and child.finish_reason != "stop":
            continue  # nothing written and the answer not ended: no new state
        if ids in seen:
            out[seen[ids]][1] += 1
            stats.duplicate_samples += 1
            continue
        seen[ids] = len(out)
        out.append([child, 1])
    return [(child, count) for child, count in out]


def _priors(distinct: list[tuple[Child, int]]) -> list[float]:
    logits = [math.log(count) + child.mean_logprob for child, count in distinct]
    top = max(logits)
    weights = [math.exp(x - top) for x in logits]
    total = sum(weights)
    return [w / total for w in weights]


class _NewChildren:
    """The children of one round, gathered for one `Forest.round` call."""

    def __init__(self):
        self.trees: list[int] = []
        self.parents: list[int] = []
        self.priors: list[float] = []
        self.values: list[float] = []
        self.terminal: list[bool] = []
        self.tokens: list[list[int]] = []
        self.texts: list[str] = []
        self.dead: list[tuple[int, int]] = []

    def expansion(self) -> Expansion:
        return Expansion(self.trees, self.parents, self.priors, self.values, self.terminal, self.tokens)

    def dead_leaves(self) -> tuple[list[int], list[int]] | None:
        return ([t for t, _ in self.dead], [leaf for _, leaf in self.dead]) if self.dead else None

    def add(self, tree, parent, prior, value, terminal, tokens, text):
        self.trees.append(tree)
        self.parents.append(parent)
        self.priors.append(prior)
        self.values.append(value)
        self.terminal.append(terminal)
        self.tokens.append(tokens)
        self.texts.append(text)


def _prefill(generator) -> tuple[int, int]:
    stats = getattr(generator, "stats", None)
    return (getattr(stats, "prefill_computed", 0), getattr(stats, "prefill_reused", 0))


class _Timer:
    def __init__(self):
        self.seconds: dict[str, float] = {
            "forest": 0.0,
            "bookkeeping": 0.0,
            "generator": 0.0,
            "reward": 0.0,
            "pairs": 0.0,
        }

    def __call__(self, name: str):
        return _Section(self.seconds, name)


class _Section:
    __slots__ = ("seconds", "name", "start")

    def __init__(self, seconds, name):
        self.seconds, self.name = seconds, name

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.seconds[self.name] += time.perf_counter() - self.start


def _progress(config: SearchConfig):
    from tqdm.auto import tqdm

    return tqdm(total=config.rounds, desc="mcts rounds", unit="round", disable=not config.progress)
