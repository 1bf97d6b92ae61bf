"""Rewards for partial answers: how good is the answer so far, given the ground truth?

A reward is a function `reward(record, text, complete) -> float` of the record, the answer text so far
(the node's whole answer prefix, decoded) and whether the answer is finished. Three are offered:

`ast_reward`, rule-based, on the steps of `rftfast.answer.steps` (a call's name, each ``name=value``, its close).
For a record whose answer is calls, with S the number of steps of the ground-truth answer and m the number of
finished steps of the text that match it, in order:

    correct so far, not finished ....................... m / (S + 1)        in [0, 1)
    finished and right (BFCL's checker accepts it) ..... 1.0
    a wrong step ....................................... m / (S + 1) - 1    in [-1, 0)

so the later the first mistake, the higher (but still negative) the reward, and every answer with a mistake
ranks below every answer without one. A step is wrong when it calls a function the truth does not (or one
call too many), gives a parameter the call does not take or a value it does not accept (BFCL's rules:
strings compared after BFCL's normalisation, an int accepted for a float, lists item by item, dicts key by
key), closes a call without a parameter the truth requires, or ends the answer with calls missing; a finished
answer that does not parse, or that BFCL's checker rejects, is wrong. An unfinished last step (a value still
being written) is neither credited nor penalised, except that a parameter name the call does not take is wrong
as soon as its ``=`` is written.

For a record whose right answer is text (no call): -1.0 once the text opens a call, 1.0 for a finished text
reply, 0.5 for a text reply under way, 0.0 while nothing tells (empty, or a lone ``[``).

The answer is read in its call format (`call_format`: "pythonic", "json" or "hermes"; `ast_reward_in` binds
one), and its steps are the same decisions in each: the same calls score the same at each step's end whatever
the format. A model that writes a call's arguments before its name (Hermes-2-Pro's template) is judged in that
order: its arguments against every expected call not yet matched, then their end, then the name.

`JudgeReward`, the policy grading the fragment against the ground truth (written in the model's call format)
with a four-level rubric, through the
generator's log-probs: the expected weight over the option probabilities, Excellent 1, Acceptable 0.1,
Fair -1, Poor -2, so in [-2, 1]. `judge_reward(record, text, complete, generator=..., tokenizer=...)` is the
same as a function.

`MixedReward`: a weighted sum of rewards.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rftfast.answer import HERMES_OPEN, PartialCall, check_format, read_partial, segment_calls
from rftfast.data.chat import END, answer_content, call_format_of, fallback_prompt
from rftfast.data.record import Record
from rftfast.eval import judge
from rftfast.eval.checker import normalize_string

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from rftfast.generation.base import Generator


class RewardFn(Protocol):
    def __call__(self, record: Record, text: str, complete: bool) -> float: ...


# ---------------------------------------------------------------------------------------------------------------
# Comparing with the ground truth
# ---------------------------------------------------------------------------------------------------------------


def _is_optional(option: Any) -> bool:
    return type(option) is str and option == ""


def _same_value(value: Any, expected: Any) -> bool:
    """BFCL's value rule for one acceptable value, without the function docs' types."""
    if type(expected) is str:
        return type(value) is str and normalize_string(value) == normalize_string(expected)
    if type(expected) is bool or type(value) is bool:
        return type(value) is type(expected) and value == expected
    if type(expected) is float:
        return type(value) in (int, float) and float(value) == expected
    if type(expected) is int:
        return type(value) is int and value == expected
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(expected)
            and all(_same_value(v, e) for v, e in zip(value, expected))
        )
    if isinstance(expected, dict):
        if not isinstance(value, dict):
            return False
        if value.keys() == expected.keys() and all(_same_value(value[k], expected[k]) for k in value):
            return True
        # BFCL's possible answers write a dict as {key: [acceptable values]}, "" marking an optional key.
        return (
            all(isinstance(v, list) for v in expected.values())
            and all(k in expected and _acceptable(v, expected[k]) for k, v in value.items())
            and all(k in value or "" in options for k, options in expected.items())
        )
    return value == expected


def _acceptable(value: Any, options: list) -> bool:
    return any(_same_value(value, option) for option in options if not _is_optional(option))


@dataclass(frozen=True)
class _ExpectedCall:
    name: str
    options: dict[str, list]  # parameter -> acceptable values ("" among them: may be left out)

    @property
    def required(self) -> list[str]:
        return [p for p, options in self.options.items() if not any(_is_optional(o) for o in options)]


def _expected_calls(record: Record) -> list[_ExpectedCall]:
    truth = record.meta.get("possible_answer")
    if isinstance(truth, list) and truth and all(isinstance(c, dict) and len(c) == 1 for c in truth):
        return [_ExpectedCall(name, dict(params)) for c in truth for name, params in c.items()]
    return [_ExpectedCall(c.name, {k: [v] for k, v in c.arguments.items()}) for c in record.answer]


def _matched_steps(calls: list[PartialCall], expected: list[_ExpectedCall]) -> tuple[int, bool, int]:
    """(finished steps matching the truth, whether a finished step is wrong, expected calls fully matched).

    Calls may come in any order (as BFCL's parallel rule allows): each call is matched to the first
    not-yet-used expected call with its name that accepts every argument given so far.
    """
    used: set[int] = set()
    matched = 0
    for call in calls:
        if call.name_last:
            # Arguments before the name (Hermes-2-Pro): until the name is written, any call not yet used may be
            # the one meant, so its steps are judged in the order they are written.
            candidates = [j for j in range(len(expected)) if j not in used]
        else:
            if not call.opened:
                break
            candidates = [j for j, e in enumerate(expected) if j not in used and e.name == call.name]
            if not candidates:
                return matched, True, len(used)
            matched += 1
        for key, value in call.arguments:
            candidates = [
                j for j in candidates if key in expected[j].options and _acceptable(value, expected[j].options[key])
            ]
            if not candidates:
                return matched, True, len(used)
            matched += 1
        if call.pending_name is not None and not any(call.pending_name in expected[j].options for j in candidates):
            return matched, True, len(used)  # a parameter the call does not take, before its value is written
        if not call.closed:
            break
        given = {key for key, _ in call.arguments}
        candidates = [j for j in candidates if all(p in given for p in expected[j].required)]
        if not candidates:
            return matched, True, len(used)
        if call.name_last:
            matched += 1  # the arguments' end, a step before the name
            if not call.opened:
                break
            candidates = [j for j in candidates if expected[j].name == call.name]
            if not candidates:
                return matched, True, len(used)
        used.add(candidates[0])
        matched += 1
    return matched, False, len(used)


def _clean(text: str) -> str:
    return text.split(END)[0]


def ast_reward(record: Record, text: str, complete: bool = False, call_format: str = "pythonic") -> float:
    """The rule-based reward of the answer so far, read in `call_format` (scale: module docstring)."""
    check_format(call_format, "call_format")
    text = _clean(text)
    if not record.is_call:
        return _text_answer_reward(text, complete, call_format)
    # The truth's steps in the model's format: as many as in any other (one per name, argument and close).
    steps = len(segment_calls(answer_content(record, call_format), call_format))
    calls, status = read_partial(text, format=call_format)
    expected = _expected_calls(record)
    matched, wrong, done = _matched_steps(calls, expected)
    matched = min(matched, steps)
    credit = matched / (steps + 1)
    if wrong or status == "broken":
        return credit - 1.0
    if not complete:
        return credit
    if (
        status == "whole"
        and done == len(expected)
        and len(calls) == done
        and _checker_accepts(record, text, call_format)
    ):
        return 1.0
    return credit - 1.0  # finished, but unparseable, short of calls, or refused by BFCL's checker


def ast_reward_in(call_format: str) -> RewardFn:
    """`ast_reward` reading answers in `call_format`, as a reward of (record, text, complete) for the search."""
    if check_format(call_format, "call_format") == "pythonic":
        return ast_reward
    return functools.partial(ast_reward, call_format=call_format)


def _checker_accepts(record: Record, text: str, call_format: str = "pythonic") -> bool:
    """BFCL's full rules (types from the docs, categories) on a finished answer."""
    try:
        return judge(record, text, call_format=call_format).valid
    except ValueError:  # docs that do not fit the answer: the step match above has the last word
        return True


def _text_answer_reward(text: str, complete: bool, call_format: str = "pythonic") -> float:
    stripped = text.strip()
    if not stripped:
        return 0.0
    calls, _ = read_partial(stripped, format=call_format)
    # A call whose arguments come first (Hermes-2-Pro) is a call before its name is written.
    if any(call.opened or call.arguments for call in calls):
        return -1.0
    if complete:
        return 1.0
    return 0.0 if _call_may_follow(stripped, call_format) else 0.5


def _call_may_follow(text: str, call_format: str) -> bool:
    """Whether `text` (stripped) is only the start a call would have so far: nothing tells a reply yet."""
    if call_format == "pythonic":  # a lone "[", or "[name" before its "("
        return text.startswith("[") and "(" not in text and " " not in text
    if call_format == "json":  # JSON text starts with "{" or "[": a call, or nothing
        return text[0] in "[{"
    return HERMES_OPEN.startswith(text) or text.startswith(HERMES_OPEN)


# ---------------------------------------------------------------------------------------------------------------
# The policy as judge
# ---------------------------------------------------------------------------------------------------------------

RUBRIC = (("Excellent", 1.0), ("Acceptable", 0.1), ("Fair", -1.0), ("Poor", -2.0))

JUDGE_TEMPLATE = """Grade an assistant's answer against the reference answer.

Request: {request}
Reference answer: {reference}
Assistant's answer ({state}): {answer}

Excellent: it matches the reference so far (same functions, parameters and values).
Acceptable: it differs from the reference only in harmless details.
Fair: it has a mistake that a small fix would repair.
Poor: it is wrong: wrong function, wrong parameter or value, or not the kind of answer the reference is."""


class JudgeReward:
    """The policy grades the fragment: sum over the rubric of P(level) · weight(level).

    P comes from the generator's log-probs of each level's name after the grading prompt (summed over the
    name's tokens, then normalised over the four levels). Results are cached per (record id, text, complete).
    The reference answer is written in `call_format` (default: the tokenizer's chat template's,
    `rftfast.data.chat.call_format_of`), the format the graded answers are in.
    """

    def __init__(
        self,
        generator: Generator,
        tokenizer: PreTrainedTokenizerBase,
        rubric: Sequence[tuple[str, float]] = RUBRIC,
        template: str = JUDGE_TEMPLATE,
        max_cache: int = 100_000,
        call_format: str | None = None,
    ) -> None:
        self.generator, self.tokenizer = generator, tokenizer
        call_format = call_format if call_format is not None else call_format_of(tokenizer)
        self.call_format = check_format(call_format, "call_format")
        self.rubric = tuple(rubric)
        self.template = template
        self.option_ids = [tokenizer(" " + label, add_special_tokens=False)["input_ids"] for label, _ in self.rubric]
        if any(not ids for ids in self.option_ids):
            raise ValueError("every rubric level must tokenize to at least one token")
        self._cache: dict[tuple, float] = {}
        self.max_cache = max_cache

    def prompt_ids(self, record: Record, text: str, complete: bool) -> list[int]:
        users = [m for m in record.messages if m["role"] == "user"]
        request = (users[-1].get("content") or "") if users else ""
        body = self.template.format(
            request=request,
            reference=answer_content(record, self.call_format),
            answer=_clean(text) or "(empty)",
            state="finished" if complete else "unfinished, so far",
        )
        messages = [{"role": "user", "content": body}]
        if getattr(self.tokenizer, "chat_template", None):
            prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            prompt = fallback_prompt(messages, [])
        return self.tokenizer(prompt + "Grade:", add_special_tokens=False)["input_ids"]

    def probabilities(self, record: Record, text: str, complete: bool) -> list[float]:
        logprobs = self.generator.logprobs(self.prompt_ids(record, text, complete), self.option_ids)
        totals = [sum(lp) for lp in logprobs]
        top = max(totals)
        weights = [math.exp(t - top) for t in totals]
        return [w / sum(weights) for w in weights]

    def __call__(self, record: Record, text: str, complete: bool = False) -> float:
        key = (record.id, text, complete)
        if key not in self._cache:
            if len(self._cache) >= self.max_cache:
                self._cache.clear()
            probs = self.probabilities(record, text, complete)
            self._cache[key] = sum(p * w for p, (_, w) in zip(probs, self.rubric))
        return self._cache[key]


def judge_reward(
    record: Record, text: str, complete: bool = False, *, generator: Generator, tokenizer: PreTrainedTokenizerBase
) -> float:
    """`JudgeReward(generator, tokenizer)(record, text, complete)`, uncached; in [-2, 1]."""
    return JudgeReward(generator, tokenizer)(record, text, complete)


class MixedReward:
    """A weighted sum of rewards: `MixedReward([(ast_reward, 1.0), (JudgeReward(g, tok), 0.5)])`."""

    def __init__(self, parts: Sequence[tuple[Callable[[Record, str, bool], float], float]]) -> None:
        if not parts:
            raise ValueError("MixedReward needs at least one (reward, weight)")
        self.parts = list(parts)

    def __call__(self, record: Record, text: str, complete: bool = False) -> float:
        return sum(weight * fn(record, text, complete) for fn, weight in self.parts if weight)
