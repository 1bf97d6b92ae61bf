"""Find where an answer step ends while the answer is still being generated.

The search grows a pythonic answer (``[f(a=1, b="x"), g()]``) one step at a time, so generation stops as soon as
a step is complete. A step is complete when, at the top level of a call, one of these characters is generated:

- the ``(`` after a function name (the call is opened: ``[f(``),
- the ``,`` after an argument value (``a=1,``; the whitespace after it belongs to the *next* step),
- the ``)`` that closes the call.

Characters inside strings and inside nested ``[...]``, ``(...)``, ``{...}`` values never end a step (the
`rftfast.answer.lexer.Lexer` follows them). The scanner is tolerant rather than validating: the model may write
anything, and text that cannot be a call (prose such as ``"Sorry, I can't"``) simply never ends a step, so the
child runs to EOS or to its length limit. It finds the same ``(``, argument separators and ``)`` as
`rftfast.answer.steps.segment_calls`, but cuts the pieces slightly differently (``b=2)`` is one piece, where
`segment_calls` has ``b=2`` and ``)``); `rftfast.answer.steps` says how and why. The generator cuts at the end of
the *token* holding the boundary character, so a token such as ``")]"`` takes its ``]`` along.

>>> scanner = StepScanner('[f(')
>>> scanner.feed('a="x, y",')
9
>>> scanner.feed(' b=[1, 2])')
10

In the JSON and Hermes formats (`format`), steps end at the same decisions: the ``{`` that opens the arguments once
the name is written (the JSON ``(``), a ``,`` between arguments, the ``}`` that closes them, and, for a model that
writes the arguments first, the name's closing quote (`rftfast.answer.walker` has the rules and the walk):

>>> scanner = StepScanner('<tool_call>{"name": "f", ', "hermes")
>>> scanner.feed('"arguments": {"a"')
14
>>> scanner.feed(': "x, y",')
9
>>> scanner.feed(' "b": [1, 2]}}</tool_call>')
13
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rftfast.answer.calls import check_format
from rftfast.answer.lexer import NAME_STOP, WHITESPACE, Lexer
from rftfast.answer.walker import CallWalker

# Where the scanner is in the answer.
_START = "start"  # before anything but whitespace: a "[" may open the list of calls
_LIST = "list"  # between calls
_NAME = "name"  # inside a function name
_CALL = "call"  # inside a call's parentheses (arguments and their values)
_DONE = "done"  # after the closing "]", or in text that is not a call: no more steps end


class StepScanner:
    """Incremental scanner over answer text; `feed` returns where the first completed step ends in the new text.

    `answer_so_far` is the answer text already generated before this scanner starts (the prefix of the request);
    steps that ended inside it are not reported. `format` is the answer's call format (one of FORMATS; a
    ValueError for another): the JSON and Hermes formats are followed by a `rftfast.answer.walker.CallWalker`.
    """

    def __init__(self, answer_so_far: str = "", format: str = "pythonic") -> None:
        self.state = _START
        self.arguments = Lexer()  # strings and brackets inside the current call's parentheses
        self.walker = None if check_format(format) == "pythonic" else CallWalker(format)
        self.feed(answer_so_far)

    def feed(self, text: str) -> int | None:
        """Scan `text`; the number of its characters up to and including the first step end, or None.

        Scanning always consumes all of `text`, so the scanner stays in step with the answer either way.
        """
        first_end = None
        step = self._step if self.walker is None else self.walker.feed
        for i, char in enumerate(text):
            if step(char) and first_end is None:
                first_end = i + 1
        return first_end

    def _step(self, char: str) -> bool:
        """Advance over one character; True when it completes a step."""
        state = self.state
        if state == _CALL:
            return self._step_in_call(char)
        if state == _START:
            if char == "[":
                self.state = _LIST
            elif char not in WHITESPACE:
                self._start_name(char)
            return False
        if state == _LIST:
            if char == "]":
                self.state = _DONE
            elif char != "," and char not in WHITESPACE:
                self._start_name(char)
            return False
        if state == _NAME:
            if char == "(":
                self.state, self.arguments = _CALL, Lexer()
                return True
            if char in NAME_STOP:
                self.state = _DONE
        return False

    def _start_name(self, char: str) -> None:
        self.state = _DONE if char in NAME_STOP else _NAME

    def _step_in_call(self, char: str) -> bool:
        # Only syntax at the call's own level ends a step; the lexer is tolerant of mismatched closers, so one
        # cannot hang the scanner (a stray ")" inside a value closes that value's innermost bracket).
        top_level = self.arguments.at_top_level
        if not self.arguments.feed(char) or not top_level:
            return False
        if char == ",":
            return True
        if char == ")":
            self.state = _LIST
            return True
        return False


def first_step_end(answer_so_far: str, generated: str, format: str = "pythonic") -> int | None:
    """Characters of `generated` up to and including the end of the first step it completes, or None.

    >>> first_step_end('[f(a=1', ', b=2)]')
    1
    >>> first_step_end('', 'Sorry, no function fits.') is None
    True
    >>> first_step_end('{"name": "f", "parameters": {"a": 1', ', "b": 2}}', "json")
    1
    """
    return StepScanner(answer_so_far, format).feed(generated)


def cut_at_step(
    token_ids: Sequence[int],
    decode: Callable[[Sequence[int]], str],
    answer_so_far: str = "",
    format: str = "pythonic",
) -> int | None:
    """Number of leading tokens up to and including the one that completes the first answer step, or None.

    `decode` turns token ids into text (without special tokens). The text is scanned token by token, holding back
    an incomplete multi-byte character, as the transformers backend does while decoding: the token-level cut of
    the vLLM backend, of greedy-divergence pairs and of the pair diagnostics. `format`: the answer's call format.
    """
    scanner = StepScanner(answer_so_far, format)
    fed = 0
    for count in range(1, len(token_ids) + 1):
        text = decode(token_ids[:count])
        stable = len(text.rstrip("\ufffd"))
        if stable > fed:
            boundary = scanner.feed(text[fed:stable])
            fed = stable
            if boundary is not None:
                return count
    return None
