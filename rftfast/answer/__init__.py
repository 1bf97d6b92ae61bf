"""The tool-call grammar, once: everything that reads or writes an answer's calls as text.

- `calls`: parse and render the pythonic, JSON and Hermes formats (`parse_calls`, `render_calls`), read a model's
  whole answer in a format or the one its text shows (`parse_answer`, `detect_format`), and where each pythonic
  call and argument sits (`locate_pythonic_calls`).
- `lexer`: the grammar's characters (`NAME_STOP`, `WHITESPACE`, quotes, brackets) and a tolerant `Lexer` that
  follows strings and brackets one character at a time.
- `steps`: a finished answer cut into the steps the search branches on (`segment_calls`), mapped onto tokens.
- `scanner`: where a step ends while the answer is being generated (`StepScanner`); `steps` says how its cuts
  differ from `segment_calls`'.
- `partial`: an unfinished answer read as calls with their finished steps (`read_partial`), for the rewards.

It builds on `rftfast.data.record` (`Call`, `ParseError`) and on nothing else of the package.
"""

from rftfast.answer.calls import (
    ANSWER_FORMATS,
    FORMATS,
    CallSpan,
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

__all__ = [
    "ANSWER_FORMATS",
    "FORMATS",
    "NAME_STOP",
    "STEP_KINDS",
    "WHITESPACE",
    "CallSpan",
    "Lexer",
    "PartialAnswer",
    "PartialCall",
    "Step",
    "StepScanner",
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
]
