"""Read an answer that is still being written: its calls so far, and which of their steps are finished.

A pythonic answer's text is closed (its open escape, string and brackets, a stand-in value after a bare
``name=``) and parsed; if that fails, it is cut back to its last ``,``, ``(`` or ``[`` outside strings, and so
on, and the part cut off is taken for a step still being written.

>>> read_partial('[f(a=1, b="x').calls
[PartialCall(name='f', opened=True, arguments=(('a', 1),), closed=False, pending_name='b')]
>>> read_partial('[f(a=1), g(').status
'whole'

A JSON or Hermes answer is read by the walk that also cuts its steps (`rftfast.answer.walker.CallWalker`), so a
step counts as finished exactly where generation would have stopped after it, as in the pythonic format:

>>> read_partial('{"name": "f", "arguments": {"a": 1, "b": "x', format="json").calls
[PartialCall(name='f', opened=True, arguments=(('a', 1),), closed=False, pending_name='b')]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from rftfast.answer.calls import CallSpan, check_format, locate_pythonic_calls
from rftfast.answer.lexer import Lexer, syntax
from rftfast.answer.walker import WalkedCall, walk_calls
from rftfast.data.record import ParseError


@dataclass(frozen=True)
class PartialCall:
    """One call of an unfinished answer, and which of its steps are finished.

    In the JSON and Hermes formats `opened` means the name's step is finished (the ``{`` of the arguments
    follows the name, or the name is written after them), `closed` that the arguments are (their ``}``), and
    `pending_name` is given once the argument's ``:`` is written. A call begun but not opened is listed too,
    its `name` None until written. `name_last`: the call writes its arguments before its name (Hermes-2-Pro), so
    its steps are finished in that order: the arguments, their end, then the name.
    """

    name: str | None
    opened: bool  # the "(" after the name is written
    arguments: tuple[tuple[str, Any], ...]  # finished arguments, in order
    closed: bool  # its ")" is written
    pending_name: str | None = None  # the name of the argument being written, once its "=" is there
    # Out of the repr: only the Hermes-2-Pro order sets it, and every other call reads as it always did.
    name_last: bool = field(default=False, repr=False)


class PartialAnswer(NamedTuple):
    """The calls of an unfinished answer, and how much of the text they account for (`status`).

    "whole": all of the text parsed; "tail": an unfinished step was cut off; "broken": the part that does not
    parse holds a ``,``, ``)`` or ``]`` outside strings, so a step in it was finished, and it is malformed.
    """

    calls: list[PartialCall]
    status: str


def read_partial(text: str, max_cuts: int = 16, format: str = "pythonic") -> PartialAnswer:
    """The calls of the unfinished answer `text` in `format` (module docstring; a pythonic answer is cut back at
    most `max_cuts` times). Raises ValueError for a format not in FORMATS."""
    if check_format(format) != "pythonic":
        walker = walk_calls(text, format)
        return PartialAnswer([_walked_call(call) for call in walker.calls], walker.status)
    spans = _try_parse(text)
    if spans is not None:
        return PartialAnswer([_partial_call(span, text, len(text)) for span in spans], "whole")
    for cut in _cut_points(text)[:max_cuts]:
        spans = _try_parse(text[:cut])
        if spans is not None:
            status = "broken" if _has_separator(text[cut:]) else "tail"
            return PartialAnswer([_partial_call(span, text, cut) for span in spans], status)
    return PartialAnswer([], "broken" if _has_separator(text) else "tail")


def _lex(text: str) -> Lexer:
    """The lexer after `text`, stopped at the first closer that matches no open bracket."""
    lexer = Lexer()
    for char in text:
        lexer.feed(char)
        if not lexer.balanced:
            break
    return lexer


def _completed(text: str) -> str | None:
    """`text` with its open string and brackets closed, or None when it cannot be closed."""
    lexer = _lex(text)
    if not lexer.balanced:  # no completion can fix a closer that matches nothing
        return None
    # A parameter name just written: a stand-in value lets it be read (and judged).
    stand_in = "None" if not lexer.quote and text.rstrip().endswith("=") else ""
    return text + stand_in + lexer.closing()


def _try_parse(text: str) -> list[CallSpan] | None:
    completed = _completed(text)
    if completed is None:
        return None
    try:
        return locate_pythonic_calls(completed)
    except ParseError:
        return None


def _has_separator(text: str) -> bool:
    """Whether `text` holds a ``,``, ``)`` or ``]`` outside strings."""
    return any(char in ",)]" for _, char in syntax(text))


def _cut_points(text: str) -> list[int]:
    """Positions just after each ``,``, ``(`` and ``[`` outside strings, last first."""
    return [i + 1 for i, char in syntax(text) if char in ",(["][::-1]


def _partial_call(span: CallSpan, text: str, length: int) -> PartialCall:
    written = text[:length]
    opened = written.find("(", span.start) != -1
    closed = span.close < length
    finished = []
    items = list(span.call.arguments.items())
    for i, (key, value) in enumerate(items):
        next_start = span.arg_starts[i + 1] if i + 1 < len(items) else None
        if next_start is not None and next_start < length:
            done = True  # the next argument began, so this one is over
        elif closed:
            done = True
        else:  # the last argument written: over once a comma follows it outside any string or bracket
            tail = written[span.arg_starts[i] :]
            done = _lex(tail).at_top_level and tail.rstrip().endswith(",")
        if not done:
            return PartialCall(span.call.name, opened, tuple(finished), closed, pending_name=key)
        finished.append((key, value))
    return PartialCall(span.call.name, opened, tuple(finished), closed)


def _walked_call(call: WalkedCall) -> PartialCall:
    if call.name_last:
        opened = call.name_end is not None
    else:  # the name's step ends with the arguments' "{", or with the call when it has no arguments member
        opened = call.name_end is not None and (call.args_open is not None or call.close is not None)
    closed = call.args_close is not None or (call.close is not None and call.args_open is None)
    return PartialCall(call.name, opened, tuple(call.arguments), closed, call.pending, call.name_last)
