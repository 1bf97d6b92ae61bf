"""JSON and Hermes call text followed one character at a time: where each call's name and arguments sit.

The strict reader of these formats (`rftfast.answer.calls`) decodes whole answers with the json module, which
says nothing of where a call's parts are. The search needs exactly that, on finished answers (`segment_calls`),
on answers being generated (`StepScanner`) and on unfinished ones (`read_partial`). `CallWalker` is the one walk
all three share, as `rftfast.answer.lexer.Lexer` is for the pythonic grammar; the parser stays the judge of
what is valid, and argument values are decoded by the same json module.

What the walk follows, one JSON object per call (a list of them, or one, as the parser reads):

- the ``"name"`` member's string, and the ``"arguments"`` (Llama-3.1: ``"parameters"``) member's object, whose
  members are the arguments; keys in any order (Hermes-2-Pro writes the arguments before the name), other
  members skipped; OpenAI's ``{"function": {...}}`` wrapper read through, arguments as a JSON string decoded;
- in the Hermes format, the text between ``<tool_call>`` and ``</tool_call>`` tags (a tag ends a block wherever
  it stands, as in the parser) and nothing outside them.

Where a step ends (`feed` returns True): the same decisions as a pythonic call's ``(``, ``,`` and ``)``, so that a
step-level pair still differs in one fragment whatever the format:

- the ``{`` that opens the arguments once the name is written (``{"name": "f", "arguments": {``): the name's
  step, which ends where the pythonic one does, once the text that follows the name is fixed;
- a ``,`` between two arguments, and the ``}`` that closes the arguments (the last argument, or no argument);
- with the arguments first, the closing quote of the name, written after them;
- a call object closed with no arguments member at all (``{"name": "f"}``); an arguments string (OpenAI's wire
  format) is cut as one argument: after its opening quote, which ends the name's step, and after its closing one.

Text that is not a call (prose in the JSON format) stops the walk: no more steps end, as in the pythonic scanner.

>>> walker = CallWalker("json")
>>> text = '[{"name": "f", "arguments": {"a": 1, "b": [2, "}"]}}]'
>>> [i + 1 for i, char in enumerate(text) if walker.feed(char)]
[29, 36, 51]
>>> call = walker.calls[0]
>>> call.name, call.arguments, walker.status
('f', [('a', 1), ('b', [2, '}'])], 'whole')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rftfast.answer.calls import HERMES_CLOSE, HERMES_OPEN
from rftfast.answer.lexer import WHITESPACE, Lexer
from rftfast.data.record import Call

ARGUMENT_KEYS = ("arguments", "parameters")  # the parser's keys for a call's arguments (Llama-3.1: "parameters")


@dataclass
class WalkedCall:
    """One call object as far as it is written; positions are character offsets in the walked text.

    `start` is the call object's ``{``; `name_key` the quote that opens the ``"name"`` key and `name_end` the
    position just after the name's closing quote; `args_open` the ``{`` of the arguments (or the quote of an
    arguments string), `arg_starts` the opening quote of each argument's key, `args_close` the ``}`` that closes
    the arguments (just after an arguments string); `close` the ``}`` of the call object and `end` the position
    just after the call's text (for the last call of a Hermes block, after its ``</tool_call>``).
    `arguments` are the finished ones; `pending` is the argument whose ``:`` is written and whose value is not.
    """

    start: int
    name: str | None = None
    name_key: int | None = None
    name_end: int | None = None
    args_open: int | None = None
    arg_starts: list[int] = field(default_factory=list)
    arguments: list[tuple[str, Any]] = field(default_factory=list)
    pending: str | None = None
    args_close: int | None = None
    close: int | None = None
    end: int | None = None

    @property
    def name_last(self) -> bool:
        """The arguments come before the name (Hermes-2-Pro's order), so the steps come in that order."""
        return self.args_open is not None and (self.name_key is None or self.name_key > self.args_open)

    def call(self) -> Call:
        return Call(self.name or "", dict(self.arguments))


# Where the walk stands inside one JSON region (a JSON answer, or one Hermes block's body).
_REGION = "region"  # before the region's value: "[" or "{"
_ITEM = "item"  # in the list of calls, after "[" or ",": a call object, or "]"
_AFTER_ITEM = "after_item"  # after a call in the list: "," or "]"
_KEY = "key"  # in an object, before a member's key, or "}"
_COLON = "colon"  # after a key
_MEMBER = "member"  # after ":", before the member's value
_AFTER_MEMBER = "after_member"  # after a member's value: "," or "}"
_DONE = "done"  # after the region's value: only whitespace may follow
_JUNK = "junk"  # text that is not a call: the walk stops
# Inside a token, character by character (its text is kept to be decoded when it ends).
_KEY_TEXT = "key_text"
_NAME_TEXT = "name_text"
_ARGS_TEXT = "args_text"  # an arguments string (OpenAI's wire format)
_VALUE_TEXT = "value_text"  # any other value: an argument's, or a member the walk does not read
_STRINGS = (_KEY_TEXT, _NAME_TEXT, _ARGS_TEXT)


@dataclass
class _Frame:
    """An open container of the call structure: "list" (of calls), "call", "args" or "wrapper" (OpenAI's)."""

    kind: str
    call: WalkedCall | None = None


class _Tag:
    """Matches a tag (``<tool_call>``, ``</tool_call>``) as its characters arrive. Each tag holds no ``<`` but
    its first, so after a mismatch only a ``<`` can start it again."""

    def __init__(self, tag: str) -> None:
        self.tag, self.matched = tag, 0

    def feed(self, char: str) -> bool:
        if char == self.tag[self.matched]:
            self.matched += 1
        else:
            self.matched = 1 if char == self.tag[0] else 0
        if self.matched == len(self.tag):
            self.matched = 0
            return True
        return False


class CallWalker:
    """Follows JSON (``format="json"``) or Hermes (``"hermes"``) call text fed one character at a time.

    `calls` are the call objects begun so far (`WalkedCall`); `status` says how much of the text they account
    for, as `rftfast.answer.read_partial` does: "broken" once a finished part is malformed (an argument value
    that does not decode, a call closed without a name, a block closed before its calls are, text that is no
    call followed by a ``,``, ``}`` or ``]``), "tail" when text that is no call ends the text, else "whole".
    """

    def __init__(self, format: str) -> None:
        if format not in ("json", "hermes"):
            raise ValueError(f"format: expected 'json' or 'hermes', got {format!r}")
        self.hermes = format == "hermes"
        self.pos = 0
        self.calls: list[WalkedCall] = []
        self.broken = False
        self.in_block = not self.hermes  # a JSON answer is one region from its first character
        self._open_tag, self._close_tag = _Tag(HERMES_OPEN), _Tag(HERMES_CLOSE)
        self._start_region()

    @property
    def status(self) -> str:
        if self.broken:
            return "broken"
        return "whole" if self.junk_at is None else "tail"

    def feed(self, char: str) -> bool:
        """Advance over one character; True when it ends a step."""
        i = self.pos
        self.pos += 1
        if not self.hermes:
            return self._walk(i, char)
        if not self.in_block:
            if self._close_tag.feed(char):
                self.broken = True  # a "</tool_call>" that closes no block: the parser refuses the answer
            if self._open_tag.feed(char):
                self.in_block = True
                self._close_tag.matched = 0
                self._start_region()
            return False
        step = self._walk(i, char)
        # The parser ends a block at the first "</tool_call>" after its start, inside a JSON string or not.
        if self._close_tag.feed(char):
            self._end_block(i + 1)
        return step

    # -- regions (a JSON answer; a Hermes block's body) ------------------------------------------------------

    def _start_region(self) -> None:
        self.state = _REGION
        self.frames: list[_Frame] = []
        self.token: list[str] = []
        self.lexer = Lexer('"')
        self.key: str | None = None
        self.junk_at: int | None = None
        self.done_at: int | None = None
        self.block_calls = len(self.calls)

    def _end_block(self, end: int) -> None:
        tag_start = end - len(HERMES_CLOSE)
        # The tag's own characters read as text that is no call, after a finished value: that is no mistake.
        finished = self.done_at is not None and (self.junk_at is None or self.junk_at >= tag_start)
        if not finished:
            self.broken = True  # the block ends before its calls do (or holds text that is no call)
        elif len(self.calls) > self.block_calls:
            self.calls[-1].end = end  # the block's last call: its text runs through the tag
        self.junk_at = None if finished else self.junk_at
        self.in_block = False

    # -- the walk ----------------------------------------------------------------------------------------------

    def _walk(self, i: int, char: str) -> bool:
        state = self.state
        if state in _STRINGS or state == _VALUE_TEXT:
            return self._token_char(i, char)
        if char in WHITESPACE:
            return False
        if state == _JUNK:
            # Nothing more is read; a separator after the junk says a step in it was finished, and malformed.
            if self.lexer.feed(char) and char in ",}]":
                self.broken = True
            return False
        if state == _KEY:
            if char == '"':
                frame = self.frames[-1]
                if frame.kind == "args":
                    frame.call.arg_starts.append(i)
                self._begin_token(_KEY_TEXT, char)
                return False
            if char == "}":
                return self._close_object(i)
        elif state == _COLON:
            if char == ":":
                self.state = _MEMBER
                frame = self.frames[-1]
                if frame.kind == "args":
                    frame.call.pending = self.key  # as a pythonic "name=": the argument is named, its value to come
                return False
        elif state == _MEMBER:
            if char not in ",}]":
                return self._member(i, char)
        elif state == _AFTER_MEMBER:
            if char == ",":
                self.state = _KEY
                return self.frames[-1].kind == "args"  # an argument ends
            if char == "}":
                return self._close_object(i)
        elif state in (_REGION, _ITEM):
            if char == "{":
                call = WalkedCall(i)
                self.calls.append(call)
                self.frames.append(_Frame("call", call))
                self.state = _KEY
                return False
            if char == "[" and state == _REGION:
                self.frames.append(_Frame("list"))
                self.state = _ITEM
                return False
            if char == "]" and state == _ITEM:
                return self._close_list(i)
        elif state == _AFTER_ITEM:
            if char == ",":
                self.state = _ITEM
                return False
            if char == "]":
                return self._close_list(i)
        return self._junk(i, char)

    def _junk(self, i: int, char: str) -> bool:
        """`char` (at `i`) is not call text: stop the walk there."""
        self._stop(i)
        if self.lexer.feed(char) and char in ",}]":
            self.broken = True
        return False

    def _stop(self, i: int) -> bool:
        self.state = _JUNK
        if self.junk_at is None:
            self.junk_at = i
        self.lexer = Lexer('"')
        return False

    def _member(self, i: int, char: str) -> bool:
        """The first character of a member's value."""
        frame = self.frames[-1]
        call, key = frame.call, self.key
        if frame.kind == "call":
            if key == "name" and call.name is None:
                if char != '"':
                    return self._junk(i, char)  # a name that is not a string
                self._begin_token(_NAME_TEXT, char)
                return False
            if key in ARGUMENT_KEYS and call.args_open is None:
                if char == "{":
                    call.args_open = i
                    self.frames.append(_Frame("args", call))
                    self.state = _KEY
                    return call.name is not None  # the name written first: its step ends here, as at a "("
                if char == '"':
                    call.args_open = i
                    self._begin_token(_ARGS_TEXT, char)
                    return call.name is not None
            if key == "function" and char == "{" and call.name is None and call.args_open is None:
                # OpenAI's {"type": "function", "function": {"name": ..., "arguments": ...}}: the inner object
                # is the call, as the parser reads it.
                frame.kind = "wrapper"
                self.frames.append(_Frame("call", call))
                self.state = _KEY
                return False
        self._begin_token(_VALUE_TEXT, char)
        return False

    def _begin_token(self, state: str, char: str) -> None:
        self.state = state
        self.token = [char]
        self.lexer = Lexer('"')
        self.lexer.feed(char)

    def _token_char(self, i: int, char: str) -> bool:
        state, lexer = self.state, self.lexer
        if state == _VALUE_TEXT:
            # A value ends at a "," or "}" outside its strings and brackets; that character is the object's.
            if lexer.at_top_level and char in ",}":
                self._end_value()
                return self._walk(i, char)
            self.token.append(char)
            lexer.feed(char)
            return False
        self.token.append(char)
        lexer.feed(char)
        if lexer.quote:
            return False
        text = _decode("".join(self.token))
        if not isinstance(text, str):
            return self._stop(i)  # an escape JSON does not know
        frame = self.frames[-1]
        call = frame.call
        if state == _KEY_TEXT:
            self.key = text
            if frame.kind == "call" and text == "name" and call.name_key is None:
                call.name_key = i + 1 - len(self.token)
            self.state = _COLON
            return False
        self.state = _AFTER_MEMBER
        if state == _NAME_TEXT:
            if not text:
                self.broken = True  # the parser needs a non-empty name
            call.name, call.name_end = text, i + 1
            return call.args_close is not None  # the name written after the arguments: its step ends here
        # An arguments string: all its arguments at once, as the parser decodes them.
        arguments = _decode(text) if text.strip() else {}
        if isinstance(arguments, dict):
            call.arguments = list(arguments.items())
            call.arg_starts = [call.args_open] if arguments else []
        else:
            self.broken = True
        call.args_close = i + 1
        return True

    def _end_value(self) -> None:
        frame = self.frames[-1]
        self.state = _AFTER_MEMBER
        if frame.kind != "args":
            return  # a member the walk does not read
        call = frame.call
        value = _decode("".join(self.token), _MALFORMED)
        if value is _MALFORMED:
            self.broken = True  # a finished argument whose value is no JSON value
        else:
            call.arguments.append((self.key, value))
        call.pending = None

    def _close_object(self, i: int) -> bool:
        frame = self.frames.pop()
        call = frame.call
        if frame.kind == "args":
            call.args_close = i
            call.pending = None
            self.state = _AFTER_MEMBER
            return True
        if frame.kind == "call":
            call.close = i
            if call.name is None:
                self.broken = True  # a call object without its name
            if self.frames and self.frames[-1].kind == "wrapper":
                self.state = _AFTER_MEMBER
            else:
                call.end = i + 1
                self._after_call(i)
            return call.args_open is None  # no arguments at all: the call's one step ends with it
        call.end = i + 1  # OpenAI's wrapper
        self._after_call(i)
        return False

    def _after_call(self, i: int) -> None:
        if self.frames:  # in the list of calls
            self.state = _AFTER_ITEM
        else:
            self.state, self.done_at = _DONE, i + 1

    def _close_list(self, i: int) -> bool:
        self.frames.pop()
        self.state, self.done_at = _DONE, i + 1
        return False


_MALFORMED = object()


def _decode(text: str, default: Any = None) -> Any:
    """`text` as the parser's json module reads it; `default` where it reads no JSON value."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # ValueError: JSONDecodeError, or an int of too many digits
        return default


def walk_calls(text: str, format: str) -> CallWalker:
    """A `CallWalker` in `format` ("json" or "hermes") fed all of `text`."""
    walker = CallWalker(format)
    for char in text:
        walker.feed(char)
    return walker
