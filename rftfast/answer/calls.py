"""Tool calls as text: parse and render the pythonic, JSON and Hermes formats.

Three ways models write the same list of `Call`s:

- ``"pythonic"``: ``[get_weather(city="Paris"), pkg.convert(amount=[1, {"k": -2.5}])]``, as BFCL and
  ToolACE write answers. Function names may hold dots and inner spaces (ToolACE: ``[Get Weather(city="Paris")]``),
  so this is not Python, and it is read by a small recursive-descent reader rather than `ast`.
- ``"json"``: ``[{"name": "get_weather", "arguments": {"city": "Paris"}}]``.
- ``"hermes"``: ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`` blocks.

`parse_calls(render_calls(calls, f), f) == calls` for every format `f` (floats stay floats, ints stay ints).
Parsing raises only `ParseError`, whose `position` is the character offset of the problem in the input.

A model's whole answer is read by `parse_answer`, in a format or in ``"auto"``: the format `detect_format` sees.

>>> parse_calls('[Get Weather(city="Paris", days=3)]')
[Call(name='Get Weather', arguments={'city': 'Paris', 'days': 3})]
>>> render_calls([Call("f", {"a": 1.0, "b": None})])
'[f(a=1.0, b=None)]'
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rftfast.answer.lexer import NAME_STOP, WHITESPACE
from rftfast.data.record import Call, ParseError

FORMATS = ("pythonic", "json", "hermes")
ANSWER_FORMATS = (*FORMATS, "auto")
"""The formats `parse_answer` reads a model's answer in: one of FORMATS, or "auto" to take `detect_format`'s."""


def parse_calls(text: str, format: str = "pythonic") -> list[Call]:
    """The calls written in `text`, in `format` ("pythonic", "json" or "hermes").

    >>> parse_calls('f(a=1)')
    [Call(name='f', arguments={'a': 1})]
    >>> parse_calls('{"name": "f", "parameters": {"a": 1}}', "json")
    [Call(name='f', arguments={'a': 1})]
    >>> parse_calls('Sure. <tool_call>\\n{"name": "f", "arguments": {}}\\n</tool_call>', "hermes")
    [Call(name='f', arguments={})]
    """
    parse = _PARSERS[check_format(format)]
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    return parse(text)


def render_calls(calls: list[Call], format: str = "pythonic") -> str:
    """`calls` written in `format`, so that `parse_calls` reads them back exactly.

    Raises ValueError for a call no text in that format could carry (an empty name, a non-finite float, a
    dict key that is not a string, a pythonic name with brackets or quotes in it, ...).

    >>> render_calls([Call("f", {"a": 1, "b": "x"}), Call("pkg.g", {"c": [True, {"k": -2.5}]})])
    '[f(a=1, b="x"), pkg.g(c=[True, {"k": -2.5}])]'
    >>> print(render_calls([Call("f", {"a": 1})], "hermes"))
    <tool_call>
    {"name": "f", "arguments": {"a": 1}}
    </tool_call>
    """
    render = _RENDERERS[check_format(format)]
    if isinstance(calls, (Call, str)) or not hasattr(calls, "__iter__"):
        raise ValueError(f"calls: expected a list of Call, got {type(calls).__name__}")
    calls = list(calls)
    for i, call in enumerate(calls):
        _check_renderable_call(call, f"calls[{i}]")
    return render(calls)


def detect_format(text: str) -> str:
    """The format a model's answer is written in, seen from its text alone, for ``parse_answer(text, "auto")``.

    - ``"json"`` when, past leading whitespace, the text starts with ``{`` or with ``[`` then ``{``: no pythonic
      answer can (a pythonic call starts with its function name), so such text is JSON or nothing. The keys
      are not looked at: an object without a "name" is a malformed call in every format, and reading it as
      JSON says so best. Llama-3.1 writes ``{"name": ..., "parameters": {...}}``.
    - ``"hermes"`` otherwise, when the text holds a ``<tool_call>`` tag anywhere: Qwen2.5 and Hermes models
      may write prose before their blocks. Tested after JSON so that a JSON call whose argument mentions the
      tag stays JSON (a pythonic one does not: name the format for a model that writes such arguments).
    - ``"pythonic"`` otherwise, prose included: prose then fails to parse, and a judge counts that as an answer
      without a call, as it did when every answer was read as pythonic.

    >>> detect_format('  [{"name": "f", "arguments": {}}]'), detect_format('{"name": "f", "parameters": {}}')
    ('json', 'json')
    >>> detect_format('Sure.\\n<tool_call>\\n{"name": "f", "arguments": {}}\\n</tool_call>')
    'hermes'
    >>> detect_format('[f(a=1)]'), detect_format('It is sunny.')
    ('pythonic', 'pythonic')
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    start = text.lstrip(WHITESPACE)
    if start.startswith("{") or (start.startswith("[") and start[1:].lstrip(WHITESPACE).startswith("{")):
        return "json"
    if HERMES_OPEN in text:
        return "hermes"
    return "pythonic"


def parse_answer(text: str, format: str = "pythonic") -> list[Call]:
    """The calls of a model's whole answer, in `format` (one of ANSWER_FORMATS; "auto": `detect_format`'s).

    As `parse_calls`, except that a Hermes answer without any ``<tool_call>`` block raises ParseError: it is
    prose, as it is in the other formats, where the judge counts it as no call, not as an empty list of calls.

    >>> parse_answer('<tool_call>\\n{"name": "f", "arguments": {"a": 1}}\\n</tool_call>', "auto")
    [Call(name='f', arguments={'a': 1})]
    >>> parse_answer("It is sunny.", "hermes")
    Traceback (most recent call last):
    rftfast.data.record.ParseError: expected a '<tool_call>' block, found none at position 0 near 'It is sunny.'
    """
    if format not in ANSWER_FORMATS:
        raise ValueError(f"format: expected one of {ANSWER_FORMATS}, got {format!r}")
    if not isinstance(text, str):
        raise TypeError(f"text: expected str, got {type(text).__name__}")
    if format == "auto":
        format = detect_format(text)
    if format == "hermes" and HERMES_OPEN not in text:
        raise ParseError(f"expected a {HERMES_OPEN!r} block, found none", 0, text)
    return parse_calls(text, format)


def check_format(format: str, argument: str = "format") -> str:
    """`format` if it is one of FORMATS (the formats calls are written and cut in), else a ValueError naming the
    caller's `argument`."""
    if format not in FORMATS:
        raise ValueError(f"{argument}: expected one of {FORMATS}, got {format!r}")
    return format


# --------------------------------------------------------------------------------------------------------------
# Pythonic: the reader
# --------------------------------------------------------------------------------------------------------------

_ARGUMENT_NAME = re.compile(r"[^\W\d][\w.-]*")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_WORD = re.compile(r"\w+")
_KEYWORDS = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}
_SIMPLE_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "a": "\a",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "/": "/",
    "\n": "",
}
_HEX_ESCAPE_DIGITS = {"x": 2, "u": 4, "U": 8}
# Runs of characters that need no attention inside a string, per quote character.
_PLAIN_STRING_RUN = {'"': re.compile(r'[^"\\]+'), "'": re.compile(r"[^'\\]+")}


@dataclass(frozen=True)
class CallSpan:
    """Where one pythonic call sits in its text, so the answer can be cut into search steps.

    `start` is the first character of the function name, `arg_starts` the first character of each
    ``name=value``, and `close` the offset of the ``)`` that ends the call.
    """

    call: Call
    start: int
    arg_starts: tuple[int, ...]
    close: int


def locate_pythonic_calls(text: str) -> list[CallSpan]:
    """Parse pythonic `text` and say where each call and each argument begins.

    >>> [(s.call.name, s.start, s.arg_starts, s.close) for s in locate_pythonic_calls('[f(a=1, b=2)]')]
    [('f', 1, (3, 8), 11)]
    """
    reader = _PythonicReader(text)
    try:
        return reader.read_answer()
    except RecursionError:
        # Each nesting level costs a few Python frames; thousands of levels are not an answer.
        raise ParseError("values nested too deeply", reader.pos, text) from None


def _parse_pythonic(text: str) -> list[Call]:
    return [span.call for span in locate_pythonic_calls(text)]


class _PythonicReader:
    """A cursor over pythonic call text; each `read_*` method consumes one construct and returns it.

    Grammar (whitespace allowed between any two tokens; trailing commas allowed in every list)::

        answer   := "[" [call ("," call)*] "]"  |  call ("," call)*
        call     := name "(" [argname "=" value ("," argname "=" value)*] ")"
        value    := string | number | True | False | None | true | false | null
                  | "[" values "]" | "(" values ")" | "{" string ":" value, ... "}"
    """

    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    # -- cursor helpers ------------------------------------------------------------------------------------

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_whitespace(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in WHITESPACE:
            self.pos += 1

    def error(self, expected: str, position: int | None = None) -> ParseError:
        """A ParseError saying what was expected and what was found at `position` (default: the cursor)."""
        position = self.pos if position is None else position
        found = repr(self.text[position]) if position < len(self.text) else "end of text"
        return ParseError(f"expected {expected}, found {found}", position, self.text)

    def expect(self, char: str, expected: str | None = None) -> None:
        if self.peek() != char:
            raise self.error(expected or repr(char))
        self.pos += 1

    def at_separator(self, closer: str, expected: str) -> bool:
        """Consume a "," (True) or stop before `closer` (False); anything else is an error."""
        self.skip_whitespace()
        if self.peek() == ",":
            self.pos += 1
            self.skip_whitespace()
            return True
        if self.peek() != closer:
            raise self.error(expected)
        return False

    # -- calls ---------------------------------------------------------------------------------------------

    def read_answer(self) -> list[CallSpan]:
        self.skip_whitespace()
        bracketed = self.peek() == "["
        if bracketed:
            self.pos += 1
            self.skip_whitespace()
            spans = [] if self.peek() == "]" else self.read_call_sequence("]")
            self.expect("]", "',' or ']'")
        else:
            spans = self.read_call_sequence("")
        self.skip_whitespace()
        if self.pos != len(self.text):
            raise self.error("end of text" if bracketed else "',' or end of text")
        return spans

    def read_call_sequence(self, closer: str) -> list[CallSpan]:
        """Calls separated by commas, up to `closer` ("]", or "" for the end of the text)."""
        spans = [self.read_call()]
        while self.at_separator(closer, f"',' or {repr(closer) if closer else 'end of text'} after a call"):
            if self.peek() == closer:  # a trailing comma
                break
            spans.append(self.read_call())
        return spans

    def read_call(self) -> CallSpan:
        start = self.pos
        name = self.read_function_name()
        self.expect("(", f"'(' after the function name {name!r}")
        self.skip_whitespace()
        arguments: dict[str, Any] = {}
        arg_starts: list[int] = []
        while self.peek() != ")":
            arg_starts.append(self.pos)
            key, value = self.read_argument(arguments)
            arguments[key] = value
            if not self.at_separator(")", f"',' or ')' after the argument {key!r} of {name!r}"):
                break
        close = self.pos
        self.pos += 1
        return CallSpan(Call(name, arguments), start, tuple(arg_starts), close)

    def read_function_name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in NAME_STOP:
            self.pos += 1
        name = self.text[start : self.pos].strip(" ")
        if not name:
            raise self.error("a function name", start)
        return name

    def read_argument(self, seen: dict[str, Any]) -> tuple[str, Any]:
        """One ``name=value``; `seen` holds the arguments already read, to refuse a repeated name."""
        match = _ARGUMENT_NAME.match(self.text, self.pos)
        if not match:
            raise self.error("an argument name or ')'")
        key = match.group()
        if key in seen:
            raise ParseError(f"duplicate argument {key!r}", self.pos, self.text)
        self.pos = match.end()
        self.skip_whitespace()
        self.expect("=", f"'=' after the argument name {key!r} (positional arguments are not supported)")
        self.skip_whitespace()
        return key, self.read_value()

    # -- values --------------------------------------------------------------------------------------------

    def read_value(self) -> Any:
        char = self.peek()
        if char in ("'", '"'):
            return self.read_string()
        if char == "[":
            return self.read_sequence("]")
        if char == "(":
            return self.read_parenthesized()
        if char == "{":
            return self.read_dict()
        if char and (char.isdigit() or char in "+-."):
            return self.read_number()
        return self.read_keyword()

    def read_sequence(self, closer: str) -> list:
        """The items between the opener under the cursor and `closer`; used for lists and tuples alike."""
        self.pos += 1
        self.skip_whitespace()
        items = []
        while self.peek() != closer:
            items.append(self.read_value())
            if not self.at_separator(closer, f"',' or {closer!r}"):
                break
        self.pos += 1
        return items

    def read_parenthesized(self) -> Any:
        """A tuple (read as a list), or, as in Python, one value in parentheses without a comma."""
        start = self.pos
        items = self.read_sequence(")")
        inner = self.text[start + 1 : self.pos - 1].rstrip(WHITESPACE)
        return items[0] if len(items) == 1 and not inner.endswith(",") else items

    def read_dict(self) -> dict:
        self.pos += 1
        self.skip_whitespace()
        result = {}
        while self.peek() != "}":
            if self.peek() not in ("'", '"'):
                raise self.error("a string key or '}'")
            key = self.read_string()
            self.skip_whitespace()
            self.expect(":", f"':' after the key {key!r}")
            self.skip_whitespace()
            result[key] = self.read_value()
            if not self.at_separator("}", "',' or '}'"):
                break
        self.pos += 1
        return result

    def read_string(self) -> str:
        start, quote = self.pos, self.text[self.pos]
        self.pos += 1
        plain_run = _PLAIN_STRING_RUN[quote]
        chunks = []
        while True:
            match = plain_run.match(self.text, self.pos)
            if match:
                chunks.append(match.group())
                self.pos = match.end()
            char = self.peek()
            if char == quote:
                self.pos += 1
                return "".join(chunks)
            if not char:
                raise ParseError(f"unterminated string: expected a closing {quote}", start, self.text)
            chunks.append(self.read_escape())

    def read_escape(self) -> str:
        """The character(s) a backslash escape under the cursor stands for, as Python reads them.

        Unknown escapes keep their backslash (``"C:\\path"``), as in Python; ``\\uXXXX`` surrogate halves are
        not paired up, also as in Python, so every string renders and reads back exactly.
        """
        start = self.pos
        code = self.text[self.pos + 1 : self.pos + 2]
        if code in _SIMPLE_ESCAPES:
            self.pos += 2
            return _SIMPLE_ESCAPES[code]
        if code in _HEX_ESCAPE_DIGITS:
            return self.read_hex_escape(code, start)
        self.pos += 1  # keep the backslash; the next character is read as itself
        return "\\"

    def read_hex_escape(self, code: str, start: int) -> str:
        n_digits = _HEX_ESCAPE_DIGITS[code]
        digits = self.text[start + 2 : start + 2 + n_digits]
        if len(digits) != n_digits or not all(c in "0123456789abcdefABCDEF" for c in digits):
            raise ParseError(f"expected {n_digits} hex digits after \\{code}", start, self.text)
        codepoint = int(digits, 16)
        if codepoint > 0x10FFFF:
            raise ParseError(f"\\{code}{digits} is beyond the last Unicode code point", start, self.text)
        self.pos = start + 2 + n_digits
        return chr(codepoint)

    def read_number(self) -> int | float:
        start = self.pos
        match = _NUMBER.match(self.text, start)
        if not match:
            raise self.error("a value")
        literal = match.group()
        self.pos = match.end()
        if any(c in literal for c in ".eE"):
            return float(literal)
        try:
            return int(literal)
        except ValueError:  # Python refuses to convert integers of more than a few thousand digits
            raise ParseError(f"integer literal of {len(literal)} characters is too long", start, self.text) from None

    def read_keyword(self) -> Any:
        match = _WORD.match(self.text, self.pos)
        if match and match.group() in _KEYWORDS:
            self.pos = match.end()
            return _KEYWORDS[match.group()]
        if match:
            raise ParseError(
                f"expected a value, found the bare word {match.group()!r} (strings need quotes)", self.pos, self.text
            )
        raise self.error("a value (string, number, True/False/None, list, tuple or dict)")


# --------------------------------------------------------------------------------------------------------------
# Pythonic: the writer
# --------------------------------------------------------------------------------------------------------------

_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _render_pythonic(calls: list[Call]) -> str:
    return "[" + ", ".join(_render_pythonic_call(call) for call in calls) + "]"


def _render_pythonic_call(call: Call) -> str:
    arguments = ", ".join(f"{key}={python_literal(value)}" for key, value in call.arguments.items())
    return f"{call.name}({arguments})"


def python_literal(value: Any) -> str:
    """`value` (a JSON-like value) as the pythonic reader reads it back; tuples are written as lists.

    >>> python_literal({"k": [1, 2.0, True, None, 'say "hi"\\n']})
    '{"k": [1, 2.0, True, None, "say \\\\"hi\\\\"\\\\n"]}'
    """
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float, and keeps its ".0"
    if isinstance(value, str):
        return quote_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(python_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{quote_string(k)}: {python_literal(v)}" for k, v in value.items()) + "}"
    raise ValueError(f"cannot write a {type(value).__name__} as a pythonic value")


def quote_string(text: str) -> str:
    """`text` in double quotes, escaped so that the pythonic reader (and Python) read it back exactly.

    Printable characters, unicode included, are written as they are; the rest as ``\\uXXXX`` / ``\\UXXXXXXXX``.

    >>> print(quote_string('a "b"\\n\\x00é'))
    "a \\"b\\"\\n\\u0000é"
    """
    out = []
    for char in text:
        if char in _STRING_ESCAPES:
            out.append(_STRING_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


# --------------------------------------------------------------------------------------------------------------
# JSON and Hermes
# --------------------------------------------------------------------------------------------------------------

_JSON_DECODER = json.JSONDecoder()
HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"  # the tags around each Hermes block


def _parse_json(text: str) -> list[Call]:
    return _JsonCallReader(text, 0, len(text)).read()


class _JsonCallReader:
    """Reads the calls in ``text[start:end]`` (a list of call objects, or one object).

    A list is decoded element by element so that an error names the offending call's position; error
    positions are offsets into the whole `text`, so a Hermes block reports where it sits in the answer.
    """

    def __init__(self, text: str, start: int, end: int):
        self.text, self.start = text, start
        self.region = text[start:end]

    def error(self, message: str, local_position: int) -> ParseError:
        return ParseError(message, self.start + local_position, self.text)

    def skip_whitespace(self, pos: int) -> int:
        while pos < len(self.region) and self.region[pos] in WHITESPACE:  # JSON's whitespace: the same four
            pos += 1
        return pos

    def read(self) -> list[Call]:
        pos = self.skip_whitespace(0)
        if self.region.startswith("[", pos):
            calls, pos = self.read_call_list(pos)
        else:
            value, end = self.decode_value(pos)
            calls, pos = [self.call_from_object(value, pos)], end
        pos = self.skip_whitespace(pos)
        if pos != len(self.region):
            raise self.error("expected end of the JSON calls, found more text", pos)
        return calls

    def read_call_list(self, pos: int) -> tuple[list[Call], int]:
        pos = self.skip_whitespace(pos + 1)
        calls: list[Call] = []
        if self.region.startswith("]", pos):
            return calls, pos + 1
        while True:  # JSON allows no trailing comma: after a "," comes a value
            value, end = self.decode_value(pos)
            calls.append(self.call_from_object(value, pos))
            pos = self.skip_whitespace(end)
            if self.region.startswith("]", pos):
                return calls, pos + 1
            if not self.region.startswith(",", pos):
                raise self.error("invalid JSON: expected ',' or ']' after a call", pos)
            pos = self.skip_whitespace(pos + 1)

    def decode_value(self, pos: int) -> tuple[Any, int]:
        try:
            return _JSON_DECODER.raw_decode(self.region, pos)
        except json.JSONDecodeError as e:
            raise self.error(f"invalid JSON: {e.msg}", e.pos) from None
        except RecursionError:
            raise self.error("invalid JSON: nested too deeply", pos) from None
        except ValueError as e:  # e.g. an integer of more digits than Python will convert
            raise self.error(f"invalid JSON: {e}", pos) from None

    def call_from_object(self, value: Any, pos: int) -> Call:
        """A `Call` from ``{"name", "arguments" | "parameters"}`` (or an OpenAI ``{"function": {...}}`` entry)."""
        if isinstance(value, dict) and isinstance(value.get("function"), dict):
            value = value["function"]
        if not isinstance(value, dict):
            raise self.error(
                f'expected a call object {{"name": ..., "arguments": {{...}}}}, found {type(value).__name__}', pos
            )
        name = value.get("name")
        if not isinstance(name, str) or not name:
            raise self.error(f'expected the call object to have a non-empty string "name", found {name!r:.60}', pos)
        arguments = value["arguments"] if "arguments" in value else value.get("parameters")
        if arguments is None:
            arguments = {}
        elif isinstance(arguments, str):  # the OpenAI wire format carries arguments as a JSON string
            arguments = self.decode_argument_string(arguments, name, pos)
        if not isinstance(arguments, dict):
            raise self.error(
                f"expected the arguments of {name!r} to be an object, found {type(arguments).__name__}", pos
            )
        return Call(name, arguments)

    def decode_argument_string(self, arguments: str, name: str, pos: int) -> Any:
        if not arguments.strip():
            return {}
        try:
            return json.loads(arguments)
        except RecursionError:
            raise self.error(f"the arguments string of {name!r} is nested too deeply", pos) from None
        except ValueError as e:
            raise self.error(f"the arguments string of {name!r} is not valid JSON: {e}", pos) from None


def _parse_hermes(text: str) -> list[Call]:
    """The calls in every ``<tool_call>...</tool_call>`` block; the text around the blocks is ignored."""
    calls: list[Call] = []
    pos = 0
    while True:
        open_at = text.find(HERMES_OPEN, pos)
        stray_close = text.find(HERMES_CLOSE, pos)
        if stray_close != -1 and (open_at == -1 or stray_close < open_at):
            raise ParseError(f"found {HERMES_CLOSE!r} without an opening {HERMES_OPEN!r}", stray_close, text)
        if open_at == -1:
            return calls
        body_start = open_at + len(HERMES_OPEN)
        close_at = text.find(HERMES_CLOSE, body_start)
        if close_at == -1:
            raise ParseError(f"unclosed {HERMES_OPEN!r}: expected {HERMES_CLOSE!r}", open_at, text)
        calls.extend(_JsonCallReader(text, body_start, close_at).read())
        pos = close_at + len(HERMES_CLOSE)


def _render_json(calls: list[Call]) -> str:
    return json.dumps([call.to_json() for call in calls], ensure_ascii=False, allow_nan=False)


def _render_hermes(calls: list[Call]) -> str:
    return "\n".join(f"{HERMES_OPEN}\n{_hermes_json(call)}\n{HERMES_CLOSE}" for call in calls)


def _hermes_json(call: Call) -> str:
    # "</" only occurs inside JSON strings; writing it "<\/" (a valid JSON escape) keeps an argument that
    # mentions "</tool_call>" from closing the block early.
    return json.dumps(call.to_json(), ensure_ascii=False, allow_nan=False).replace("</", "<\\/")


# --------------------------------------------------------------------------------------------------------------
# What can be rendered
# --------------------------------------------------------------------------------------------------------------


def _check_renderable_call(call: Call, where: str) -> None:
    """Refuse, with a ValueError naming `where`, a call that would not read back as itself in some format."""
    if not isinstance(call, Call):
        raise ValueError(f"{where}: expected a Call, got {type(call).__name__}")
    if not isinstance(call.name, str) or not call.name:
        raise ValueError(f"{where}.name: expected a non-empty string, got {call.name!r}")
    if not isinstance(call.arguments, dict):
        raise ValueError(f"{where}.arguments: expected a dict, got {type(call.arguments).__name__}")
    for key, value in call.arguments.items():
        if not isinstance(key, str):
            raise ValueError(f"{where}.arguments: argument names must be strings, got {key!r}")
        _check_renderable_value(value, f"{where}.arguments[{key!r}]")


def _check_renderable_value(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} has no JSON or pythonic literal")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_renderable_value(item, f"{where}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: dict keys must be strings, got {key!r}")
            _check_renderable_value(item, f"{where}[{key!r}]")
    else:
        raise ValueError(f"{where}: cannot write a {type(value).__name__} as a JSON-like value")


def _check_pythonic_names(calls: list[Call]) -> None:
    """Names the pythonic reader would read differently (brackets, quotes, edge spaces...) cannot be written."""
    for i, call in enumerate(calls):
        if call.name != call.name.strip(" ") or any(char in NAME_STOP for char in call.name):
            raise ValueError(
                f"calls[{i}].name: {call.name!r} cannot be written as a pythonic function name "
                f"(no leading/trailing spaces, none of {''.join(sorted(NAME_STOP))!r})"
            )
        for key in call.arguments:
            if not _ARGUMENT_NAME.fullmatch(key):
                raise ValueError(
                    f"calls[{i}].arguments: {key!r} cannot be written as a pythonic argument name "
                    "(letters, digits, '_', '.', '-'; not starting with a digit)"
                )


def _render_pythonic_checked(calls: list[Call]) -> str:
    _check_pythonic_names(calls)
    return _render_pythonic(calls)


_PARSERS: dict[str, Callable[[str], list[Call]]] = {
    "pythonic": _parse_pythonic,
    "json": _parse_json,
    "hermes": _parse_hermes,
}
_RENDERERS: dict[str, Callable[[list[Call]], str]] = {
    "pythonic": _render_pythonic_checked,
    "json": _render_json,
    "hermes": _render_hermes,
}
