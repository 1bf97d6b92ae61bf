"""Step-level preference pairs from searched trees: siblings that share a prefix and differ in one step.

At every node with two or more distinct children, the child of best value is chosen and the child of worst
value rejected. Both continue the same token prefix (the record's prompt + the answer so far), so a pair is
`prompt_ids`, `chosen_ids`, `rejected_ids`, where the chosen and rejected ids are the one step each child adds.

Filters (`PairConfig`): the values differ by at least `min_gap`; the chosen value is at least `accept_value`;
the two steps' token overlap (multiset intersection over the longer step) is at most `max_overlap`, so
near-duplicates are not trained on. Siblings with identical tokens count once (the most visited stands for
them), and a child that adds no tokens is never in a pair. With `truth` given for a tree, a node whose answer
so far is a step prefix of the ground truth takes the ground truth's next step as chosen (with the value of
the sibling that wrote it, if any, else `truth_value`) against its worst sibling.

Pairs are saved as JSONL (atomically) and load back as `Pair`s or as a `datasets.Dataset`.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from rftfast.answer import Step, StepScanner, check_format, cut_at_step, step_token_boundaries
from rftfast.data.chat import answer_content, call_format_of, render_example
from rftfast.data.io import write_jsonl_atomic
from rftfast.data.record import Record
from rftfast.mcts.forest import Forest

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class PairConfig:
    """Which sibling pairs to keep; `value` is the child value compared: "mean" (value_sum / visits, the
    child's own reward while unvisited), "q" (the forest's Q: mean or sum by its backup mode) or "reward"."""

    min_gap: float = 0.1
    max_overlap: float = 0.95
    accept_value: float = 0.0
    value: str = "mean"
    truth_value: float = 1.0


@dataclass(frozen=True)
class Truth:
    """A tree's ground-truth answer as token ids, the token index where each of its steps ends, and the call
    format its steps were cut in (the model's: a greedy answer's steps are cut in it too)."""

    answer_ids: tuple[int, ...]
    step_ends: tuple[int, ...]
    call_format: str = "pythonic"

    def next_step(self, answer_so_far: Sequence[int]) -> tuple[int, ...] | None:
        """The truth's next step after `answer_so_far`, if that is exactly a step prefix of the truth."""
        n = len(answer_so_far)
        starts = (0, *self.step_ends[:-1])
        for start, end in zip(starts, self.step_ends):
            if start == n and tuple(self.answer_ids[:n]) == tuple(answer_so_far):
                return self.answer_ids[start:end]
        return None


def answer_format(
    tokenizer: PreTrainedTokenizerBase, use_chat_template: bool | None = None, call_format: str | None = None
) -> str:
    """The call format a model's answers are in, as `rftfast.data.chat.render_example` renders them: `call_format`
    when given (a ValueError unless it is one of `rftfast.answer.FORMATS`), else the chat template's
    (`call_format_of`), pythonic under the fallback template (`use_chat_template=False`, or no template)."""
    if call_format is not None:
        return check_format(call_format, "call_format")
    return "pythonic" if use_chat_template is False else call_format_of(tokenizer)


def ground_truth(
    record: Record,
    tokenizer: PreTrainedTokenizerBase,
    use_chat_template: bool | None = None,
    call_format: str | None = None,
) -> Truth | None:
    """The record's ground-truth answer as tokens, with its step ends (None when they cannot be aligned).

    Steps are cut where generation cuts them (`rftfast.answer.scanner`), in the answer's call format
    (`answer_format`), so a node grown along the truth has exactly a truth step prefix as its answer. A record
    that calls nothing is one step. The answer is rendered as `rftfast.data.chat.render_example` renders it
    (`use_chat_template` and `call_format` as there).
    """
    call_format = answer_format(tokenizer, use_chat_template, call_format)
    example = render_example(record, tokenizer, use_chat_template=use_chat_template, call_format=call_format)
    answer_ids = example.answer_ids
    if not record.is_call:
        return Truth(tuple(answer_ids), (len(answer_ids),), call_format)
    if call_format == "pythonic":
        content = answer_content(record)
    else:
        # The template writes JSON and Hermes calls itself (Llama-3.1's "parameters", Hermes-2-Pro's arguments
        # before the name, their spacing): cut the text it wrote, up to its end of turn.
        content, eos = example.answer_text, tokenizer.eos_token
        content = content[: content.index(eos)] if eos and eos in content else content
    content_ids = tokenizer(content, add_special_tokens=False)["input_ids"]
    # Token step ends are computed on the content alone; they hold in the rendered answer only if it begins
    # with exactly those tokens.
    if answer_ids[: len(content_ids)] != content_ids:
        return None
    scanner, char_ends = StepScanner(format=call_format), []
    for i, char in enumerate(content):
        if scanner.feed(char):
            char_ends.append(i + 1)
    steps = [Step("step", start, end) for start, end in zip([0, *char_ends], char_ends)]
    ends = sorted(set(step_token_boundaries(content, steps, tokenizer)) - {0}) if steps else []
    ends = [e for e in ends if e < len(content_ids)] + [len(answer_ids)]  # the last step takes the end of turn
    return Truth(tuple(answer_ids), tuple(ends), call_format)


@dataclass
class Pair:
    """One step-level preference pair: two continuations of `prompt_ids`.

    `prompt_ids` is the record's prompt (`answer_start` tokens) followed by the shared answer so far;
    `divergence` is the index in `prompt_ids + chosen_ids` (equally `+ rejected_ids`) of the first token where
    the two differ. `tree` and `node` locate the shared parent in the forest.
    """

    record_id: str
    tree: int
    node: int
    depth: int
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    chosen_value: float
    rejected_value: float
    chosen_visits: int
    rejected_visits: int
    answer_start: int
    divergence: int
    chosen_is_truth: bool = False
    origin: str = "search"  # "search": siblings in a searched tree; "greedy": the truth against greedy decoding

    @property
    def tokens(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """What the pair trains on: (prompt, chosen, rejected) tokens; two pairs with the same are one pair."""
        return tuple(self.prompt_ids), tuple(self.chosen_ids), tuple(self.rejected_ids)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Pair:
        names = {f.name for f in fields(cls)}
        missing = names - set(d) - {"chosen_is_truth", "origin"}  # fields added later, with their defaults
        if missing:
            raise ValueError(f"pair: missing fields {sorted(missing)}")
        return cls(**{k: v for k, v in d.items() if k in names})


def token_overlap(a: Sequence[int], b: Sequence[int]) -> float:
    """Tokens the two share (as multisets) over the longer one's length; 0 for two empty sequences."""
    longest = max(len(a), len(b))
    return sum((Counter(a) & Counter(b)).values()) / longest if longest else 0.0


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class _Candidate:
    ids: tuple[int, ...]
    value: float
    visits: int
    is_truth: bool = False


def extract_pairs(
    forest: Forest,
    prompts: Sequence[Sequence[int]],
    config: PairConfig = PairConfig(),
    *,
    record_ids: Sequence[str] | None = None,
    truth: Sequence[Truth | None] | None = None,
) -> list[Pair]:
    """Pairs from every tree of `forest`; `prompts[t]` is tree t's prompt ids (its answer begins after them)."""
    if len(prompts) != forest.num_trees:
        raise ValueError(f"prompts: expected {forest.num_trees} (one per tree), got {len(prompts)}")
    if config.value not in ("mean", "q", "reward"):
        raise ValueError(f"PairConfig.value: expected 'mean', 'q' or 'reward', got {config.value!r}")
    values = _child_values(forest, config.value)
    visits, num_children = forest.visits, forest.num_children
    pairs = []
    for t in range(forest.num_trees):
        tree_truth = truth[t] if truth is not None else None
        for node in np.flatnonzero(num_children[t, : forest.num_nodes[t]] > 0):
            node = int(node)
            candidates = _distinct_children(forest, t, node, values, visits)
            answer_so_far = forest.path_tokens(t, node).tolist()
            truth_step = tree_truth.next_step(answer_so_far) if tree_truth is not None else None
            picked = _pick(candidates, truth_step, config)
            if picked is None:
                continue
            chosen, rejected = picked
            prompt_ids = [*map(int, prompts[t]), *answer_so_far]
            pairs.append(
                Pair(
                    record_id=record_ids[t] if record_ids is not None else str(t),
                    tree=t,
                    node=node,
                    depth=int(forest.depth[t, node]),
                    prompt_ids=prompt_ids,
                    chosen_ids=list(chosen.ids),
                    rejected_ids=list(rejected.ids),
                    chosen_value=chosen.value,
                    rejected_value=rejected.value,
                    chosen_visits=chosen.visits,
                    rejected_visits=rejected.visits,
                    answer_start=len(prompts[t]),
                    divergence=len(prompt_ids) + _common_prefix(chosen.ids, rejected.ids),
                    chosen_is_truth=chosen.is_truth,
                )
            )
    return pairs


def divergence_pair(
    truth: Truth,
    prompt_ids: Sequence[int],
    greedy_ids: Sequence[int],
    tokenizer: PreTrainedTokenizerBase,
    *,
    record_id: str,
    tree: int = 0,
) -> Pair | None:
    """The ground truth's step against the policy's own step where greedy decoding first leaves the truth.

    `greedy_ids` is what greedy decoding wrote after `prompt_ids` (`rftfast.eval.Judged.output_ids`). Up to the
    first token where it differs from the truth, the two answers agree; the pair continues the truth's steps
    before that token (a step prefix of both) with the truth's next step (chosen) and with the greedy answer's
    own next step (rejected: its tokens up to where it completes a step in the truth's call format, or to its
    end). This is the step the policy gets wrong, at the prefix it actually reaches: "align with the truth,
    misalign with the deficiency". None when greedy decoding wrote the truth.
    """
    answer, greedy = list(truth.answer_ids), list(greedy_ids)
    first_difference = _common_prefix(answer, greedy)
    if first_difference == len(answer) and len(greedy) <= len(answer):
        return None
    step = next((i for i, end in enumerate(truth.step_ends) if end > first_difference), len(truth.step_ends) - 1)
    start = truth.step_ends[step - 1] if step else 0
    end = truth.step_ends[step]
    answer_so_far = tokenizer.decode(answer[:start])
    rejected = greedy[start:]
    # The first step the greedy tokens complete.
    end_of_step = cut_at_step(rejected, tokenizer.decode, answer_so_far, truth.call_format)
    if end_of_step is not None:
        rejected = rejected[: max(end_of_step, first_difference - start + 1)]  # the differing token always in
    chosen = answer[start:end]
    if not rejected or rejected == chosen:
        return None
    shared = [*map(int, prompt_ids), *answer[:start]]
    return Pair(
        record_id=record_id,
        tree=tree,
        node=-1,  # not a node of a searched tree
        depth=step,
        prompt_ids=shared,
        chosen_ids=chosen,
        rejected_ids=rejected,
        chosen_value=1.0,
        rejected_value=0.0,
        chosen_visits=0,
        rejected_visits=0,
        answer_start=len(prompt_ids),
        divergence=len(shared) + _common_prefix(chosen, rejected),
        chosen_is_truth=True,
        origin="greedy",
    )


def _child_values(forest: Forest, kind: str) -> np.ndarray:
    if kind == "reward":
        return forest.reward
    if kind == "q":
        return forest.q_values()
    visits = forest.visits
    # An unvisited child's mean is its own reward (nothing was backed up through it yet).
    return np.divide(forest.value_sum, visits, out=forest.reward.copy(), where=visits > 0)


def _distinct_children(forest: Forest, t: int, node: int, values: np.ndarray, visits: np.ndarray) -> list[_Candidate]:
    """The children with tokens, one per distinct token sequence (the most visited; the first on ties)."""
    by_tokens: dict[tuple[int, ...], _Candidate] = {}
    for child in forest.children_of(t, node):
        ids = tuple(forest.span(t, child).tolist())
        if not ids:
            continue
        candidate = _Candidate(ids, float(values[t, child]), int(visits[t, child]))
        if ids not in by_tokens or candidate.visits > by_tokens[ids].visits:
            by_tokens[ids] = candidate
    return list(by_tokens.values())


def _pick(
    candidates: list[_Candidate], truth_step: tuple[int, ...] | None, config: PairConfig
) -> tuple[_Candidate, _Candidate] | None:
    if truth_step:
        written = next((c for c in candidates if c.ids == truth_step), None)
        chosen = _Candidate(
            truth_step,
            written.value if written else config.truth_value,
            written.visits if written else 0,
            is_truth=True,
        )
        others = [c for c in candidates if c.ids != truth_step]
        if not others:
            return None
        rejected = min(others, key=lambda c: c.value)
    else:
        if len(candidates) < 2:
            return None
        # Best value first; among equals, the better explored.
        chosen = max(candidates, key=lambda c: (c.value, c.visits))
        rejected = min((c for c in candidates if c is not chosen), key=lambda c: c.value)
    if chosen.value - rejected.value < config.min_gap or chosen.value < config.accept_value:
        return None
    if token_overlap(chosen.ids, rejected.ids) > config.max_overlap:
        return None
    return chosen, rejected


# ---------------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------------


def pair_statistics(pairs: Sequence[Pair], searched_records: int) -> dict:
    """What a search's pairs are made of, for the run's report: how many per searched record, how often the
    chosen step is the ground truth's, the value gap, and at which depth (steps into the answer) they branch."""
    per_record = Counter(p.record_id for p in pairs)
    depths = Counter(p.depth for p in pairs)
    gaps = [p.chosen_value - p.rejected_value for p in pairs]
    return {
        "pairs": len(pairs),
        "records_with_pairs": len(per_record),
        "pairs_per_record": len(pairs) / searched_records if searched_records else 0.0,
        "chosen_is_truth": sum(p.chosen_is_truth for p in pairs) / len(pairs) if pairs else 0.0,
        "from_greedy": sum(p.origin == "greedy" for p in pairs) / len(pairs) if pairs else 0.0,
        "mean_value_gap": sum(gaps) / len(gaps) if gaps else 0.0,
        "depths": {str(d): depths[d] for d in sorted(depths)},
    }


def save_pairs(pairs: Iterable[Pair], path: str | os.PathLike) -> int:
    """Write pairs as JSONL atomically (temp file beside the target, fsync, rename); returns the count."""
    return write_jsonl_atomic((pair.to_json() for pair in pairs), path)


def load_pairs(path: str | os.PathLike) -> list[Pair]:
    """Pairs from a JSONL file written by `save_pairs`; a bad line raises ValueError naming it."""
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                pairs.append(Pair.from_json(json.loads(line)))
            except (json.JSONDecodeError, ValueError, TypeError) as e:
                raise ValueError(f"{path}:{n}: not a pair: {e}") from None
    return pairs


def pairs_dataset(pairs: Sequence[Pair] | str | os.PathLike) -> datasets.Dataset:
    """A `datasets.Dataset` with one row per pair (columns: the `Pair` fields); from pairs or a JSONL path."""
    import datasets

    if isinstance(pairs, (str, os.PathLike)):
        pairs = load_pairs(pairs)
    rows = [pair.to_json() for pair in pairs]
    if not rows:
        return datasets.Dataset.from_dict({f.name: [] for f in fields(Pair)})
    return datasets.Dataset.from_list(rows)
