"""The tool-call grammar, once: everything that reads or writes an answer's calls as text.

- `calls`: parse and render the pythonic, JSON and Hermes formats (`parse_calls`, `render_calls`), read a model's
  whole answer in a format or the one its text shows (`parse_answer`, `detect_format`), and where each pythonic
  call and argument sits (`locate_pythonic_calls`).
- `lexer`: the grammar's characters (`NAME_STOP`, `WHITESPACE`, quotes, brackets) and a tolerant `Lexer` that
  follows strings and brackets one character at a time.
- `walker`: JSON and Hermes call text followed one character at a time (`CallWalker`): where each call's name
  and arguments sit, in finished and unfinished answers alike.
- `steps`: a finished answer cut into the steps the search branches on (`segment_calls`), mapped onto tokens.
- `scanner`: where a step ends while the answer is being generated (`StepScanner`); `steps` says how its cuts
  differ from `segment_calls`'.
- `partial`: an unfinished answer read as calls with their finished steps (`read_partial`), for the rewards.

`steps`, `scanner` and `partial` take the answer's call format (`format`, one of FORMATS, "pythonic" by
default): a JSON or Hermes answer is cut into the same decisions as a pythonic one (the name, each argument,
the end of the arguments), so a call has as many steps, and a step-level pair differs in one fragment, in every
format.

It builds on `rftfast.data.record` (`Call`, `ParseError`) and on nothing else of the package.
"""

from rftfast.answer.calls import (
    ANSWER_FORMATS,
    FORMATS,
    HERMES_CLOSE,
    HERMES_OPEN,
    CallSpan,
    check_format,
    detect_format,
    locate_pythonic_calls,
    parse_answer,
    parse_calls,
    python_literal,
    quote_string,
    render_calls,
)
from rftfast.answer.lexer import NAME_STOP, WHITESPACE, Lexer
from rftfast.answer.partial import PartialAnswer, PartialCall, read_partial
from rftfast.answer.scanner import StepScanner, cut_at_step, first_step_end
from rftfast.answer.steps import STEP_KINDS, Step, segment_calls, step_token_boundaries
from rftfast.answer.walker import CallWalker, WalkedCall, walk_calls

__all__ = [
    "ANSWER_FORMATS",
    "FORMATS",
    "HERMES_CLOSE",
    "HERMES_OPEN",
    "NAME_STOP",
    "STEP_KINDS",
    "WHITESPACE",
    "CallSpan",
    "CallWalker",
    "Lexer",
    "PartialAnswer",
    "PartialCall",
    "Step",
    "StepScanner",
    "WalkedCall",
    "check_format",
    "detect_format",
    "cut_at_step",
    "first_step_end",
    "locate_pythonic_calls",
    "parse_answer",
    "parse_calls",
    "python_literal",
    "quote_string",
    "read_partial",
    "render_calls",
    "segment_calls",
    "step_token_boundaries",
    "walk_calls",
]
