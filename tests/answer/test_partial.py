"""The lexer and the partial-answer reader: unfinished answers read as calls with their finished steps."""

import doctest

import pytest

import rftfast.answer.lexer as lexer_module
import rftfast.answer.partial as partial_module
from rftfast.answer import Lexer, PartialCall, read_partial


def test_docstring_examples():
    assert doctest.testmod(lexer_module).failed == 0
    assert doctest.testmod(partial_module).failed == 0


def test_lexer_follows_strings_escapes_and_brackets():
    lexer = Lexer()
    for char in '[f(a="x\\':
        lexer.feed(char)
    assert (lexer.quote, lexer.escaped, lexer.open, lexer.balanced) == ('"', True, ["[", "("], True)
    assert lexer.closing() == '\\")]'
    for char in '""), ]}':  # the escaped quote, the string's end, ")" and "]", then a "}" that closes nothing
        lexer.feed(char)
    assert lexer.at_top_level and not lexer.balanced


@pytest.mark.parametrize(
    "text,calls,status",
    [
        ("", [], "tail"),
        ('[f(a=1, b="x', [PartialCall("f", True, (("a", 1),), False, pending_name="b")], "whole"),
        (
            '[f(a=1, b="x"), g(',
            [PartialCall("f", True, (("a", 1), ("b", "x")), True), PartialCall("g", True, (), False)],
            "whole",
        ),
        ("[f(a=1, b", [PartialCall("f", True, (("a", 1),), False)], "tail"),
        ("[f(a=1, b c, d=2", [PartialCall("f", True, (("a", 1),), False)], "broken"),
        ("[f(a=1)]]", [PartialCall("f", True, (), False)], "broken"),  # cut back to "[f(": the rest does not parse
    ],
)
def test_read_partial(text, calls, status):
    assert read_partial(text) == (calls, status)
