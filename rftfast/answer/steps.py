"""Cut a tool-call answer into the steps the tree search branches on, in any call format.

A step is one decision of the model: which function to call (``"open"``), one ``name=value`` argument
(``"arg"``), or ending the call (``"close"``). The steps tile the answer with no gaps, so the text of the
steps, concatenated, is the answer itself:

>>> text = '[f(a=1, b="x")]'
>>> [(step.kind, step.text_in(text)) for step in segment_calls(text)]
[('open', '[f('), ('arg', 'a=1, '), ('arg', 'b="x"'), ('close', ')]')]

The JSON and Hermes formats are cut into the same decisions, so a call has as many steps in each format and a
step-level pair differs in the same one fragment: the name's step runs through the ``{`` that opens the
arguments (the JSON ``(``), each argument's from its key to the next key, the close from the ``}`` that ends
the arguments (a Hermes block's last call: through its ``</tool_call>``):

>>> text = '{"name": "f", "parameters": {"a": 1, "b": "x"}}'
>>> [(step.kind, step.text_in(text)) for step in segment_calls(text, "json")]
[('open', '{"name": "f", "parameters": {'), ('arg', '"a": 1, '), ('arg', '"b": "x"'), ('close', '}}')]

A model that writes the arguments before the name (Hermes-2-Pro's template) makes its decisions in that order,
and its steps follow them: the arguments, their end, then the name (see `segment_calls`).

`step_token_boundaries` maps those character boundaries to token indices, so the search can cut token
sequences where steps end.

Two cuts of the same steps
--------------------------
The steps are cut twice, at the same syntax (a call's ``(``, the ``,`` between its arguments, its ``)``), by
two readers with different needs, and the pieces differ slightly; this is the one place that says how and why.

- `segment_calls` (here) reads a *finished* answer with the parser, so it can look ahead: each "arg" step runs
  from its argument name to the next one, carrying its separator and the whitespace after it, and the ``)`` is
  a "close" step of its own (``'a=1, '``, ``'b="x"'``, ``')]'``). The rewards count an answer's steps this way.
- `rftfast.answer.scanner.StepScanner` cuts an answer *while it is generated*, so it cannot wait to see what
  follows a character: a step ends at the ``(`` after a function name, at a ``,`` after an argument value (the
  whitespace after it starts the next piece) and at the ``)`` that closes the call, so a call's last argument
  ends only with the ``)`` (``'a=1,'``, ``' b="x")'``, ``']'``). Generation stops there, and the search cuts the
  ground truth's steps the same way, so a node grown along the truth holds a truth step prefix. The scanner is
  also tolerant: text that is not a call (prose) never ends a step, where `segment_calls` raises ParseError.

The JSON and Hermes cuts differ the same way (``'{"name": "f", "arguments": {'``, ``'"a": 1,'``,
``' "b": "x"}'``, ``'}'``); both are read off one walk of the text, `rftfast.answer.walker.CallWalker`.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from rftfast.answer.calls import check_format, locate_pythonic_calls, parse_calls
from rftfast.answer.walker import walk_calls
from rftfast.data.record import ParseError

STEP_KINDS = ("open", "arg", "close")


@dataclass(frozen=True)
class Step:
    """The characters ``text[start:end]`` of one step; `kind` is "open", "arg" or "close"."""

    kind: str
    start: int
    end: int

    def text_in(self, text: str) -> str:
        return text[self.start : self.end]


def segment_calls(text: str, format: str = "pythonic") -> list[Step]:
    """The steps of an answer in `format` (one of FORMATS), covering `text` contiguously from its first to its
    last character.

    Where each cut falls: an "open" step runs from the end of the previous call (or the start of the text,
    leading whitespace included) to the first argument name, so later calls open with ``", name("``; an "arg"
    step runs from its argument name to the next one (or to the ``)``), so it carries its separator; a "close"
    step is the ``)``, and for the last call everything after it (``"]"``, trailing whitespace). An answer of no
    calls (``"[]"``) is a single "close" step. Raises ParseError where `text` does not parse.

    >>> text = '[f(a=1), g()]'
    >>> [(step.kind, step.text_in(text)) for step in segment_calls(text)]
    [('open', '[f('), ('arg', 'a=1'), ('close', ')'), ('open', ', g('), ('close', ')]')]

    JSON and Hermes answers are cut at the same decisions (module docstring): an "open" step runs from the end of
    the previous call to the first argument's key, or to the ``}`` that closes no argument; an "arg" step from its
    key to the next; a "close" step from the ``}`` that closes the arguments through the call's end (its object's
    ``}``; a Hermes block's last call, through the block's ``</tool_call>``; the last call, to the end of the
    text). A call written with its arguments first has its steps in that order: "arg" steps (the first from the
    end of the previous call), a "close" step from the arguments' ``}`` to the ``"name"`` key, and an "open"
    step from there through the call's end. An arguments string (OpenAI's wire format) is one "arg" step.
    Raises ValueError for another format.
    """
    if check_format(format) != "pythonic":
        return _segment_walked(text, format)
    spans = locate_pythonic_calls(text)
    if not spans:
        return [Step("close", 0, len(text))]
    steps: list[Step] = []
    cut = 0
    for i, span in enumerate(spans):
        # Each argument ends where the next begins, and the last one where the ")" begins.
        argument_cuts = [*span.arg_starts, span.close]
        steps.append(Step("open", cut, argument_cuts[0]))
        steps.extend(Step("arg", start, end) for start, end in zip(argument_cuts, argument_cuts[1:]))
        cut = len(text) if i == len(spans) - 1 else span.close + 1
        steps.append(Step("close", span.close, cut))
    return steps


def _segment_walked(text: str, format: str) -> list[Step]:
    """`segment_calls` for the JSON and Hermes formats: the parser validates, the walk says where the parts are."""
    parsed = parse_calls(text, format)
    calls = walk_calls(text, format).calls
    if [call.call() for call in calls] != parsed:  # e.g. both "arguments" and "parameters": the parser picks one
        raise ParseError(f"the calls of this {format} answer cannot be cut into steps", 0, text)
    if not calls:
        return [Step("close", 0, len(text))]
    steps: list[Step] = []
    cut = 0
    for i, call in enumerate(calls):
        end = len(text) if i == len(calls) - 1 else call.end
        # No arguments member at all ({"name": "f"}): the call object's "}" ends the arguments.
        args_close = call.args_close if call.args_open is not None else call.close
        if call.name_last:
            starts = [cut, *call.arg_starts[1:]] if call.arg_starts else []
            steps.extend(Step("arg", start, stop) for start, stop in zip(starts, [*starts[1:], args_close]))
            steps.append(Step("close", args_close if starts else cut, call.name_key))
            steps.append(Step("open", call.name_key, end))
        else:
            argument_cuts = [*call.arg_starts, args_close]
            steps.append(Step("open", cut, argument_cuts[0]))
            steps.extend(Step("arg", start, stop) for start, stop in zip(argument_cuts, argument_cuts[1:]))
            steps.append(Step("close", args_close, end))
        cut = end
    return steps


def step_token_boundaries(text: str, steps: list[Step], tokenizer: Any, offset_tokens: int = 0) -> list[int]:
    """For each step, the index of the token at which it ends: ``ids[:boundary]`` holds the step and those before.

    `tokenizer` is a Hugging Face *fast* tokenizer; `text` is tokenized alone, without special tokens, with
    character offsets. A step boundary that falls inside a token is assigned to the end of that token (the
    token goes with the earlier step), so boundaries are non-decreasing and two steps can end at the same
    token. Add `offset_tokens` (the prompt's length) when the answer's tokens follow a prompt's.

    Offsets are taken as the tokenizer reports them: a tokenizer that trims a merged leading space out of a
    token's offsets (ByteLevel with ``trim_offsets=True``) makes that space count with the following step.

    Example: with a tokenizer that splits ``'[f(a=1)]'`` into ``'[', 'f', '(a', '=1', ')]'``, the steps
    ``'[f('``, ``'a=1'``, ``')]'`` end at tokens 3 (the cut after ``'('`` falls inside ``'(a'``), 4 and 5.
    """
    _check_steps(text, steps)
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("tokenizer: expected a fast (Rust-backed) Hugging Face tokenizer, which reports offsets")
    if not isinstance(offset_tokens, int) or offset_tokens < 0:
        raise ValueError(f"offset_tokens: expected a non-negative int, got {offset_tokens!r}")
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    token_starts = [start for start, _ in encoding["offset_mapping"]]
    # The tokens that start before a step's end are the step's and its predecessors' (token starts only grow).
    return [offset_tokens + bisect_left(token_starts, step.end) for step in steps]


def _check_steps(text: str, steps: list[Step]) -> None:
    previous_end = 0
    for i, step in enumerate(steps):
        if not 0 <= step.start <= step.end <= len(text) or step.end < previous_end:
            raise ValueError(f"steps[{i}]: {step} is not in order within a text of {len(text)} characters")
        previous_end = step.end
