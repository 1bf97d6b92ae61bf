"""The streaming step scanner: where an answer step ends while it is generated, and that it finds the parser's cuts."""

import doctest

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rftfast.answer.scanner as scanner_module
from rftfast.answer import StepScanner, first_step_end, locate_pythonic_calls, render_calls
from rftfast.data.record import Call


def _boundaries(text: str, answer_so_far: str = "") -> list[int]:
    """Positions (exclusive ends) in `text` where a step completes, scanning one character at a time."""
    scanner = StepScanner(answer_so_far)
    return [i + 1 for i, char in enumerate(text) if scanner.feed(char) is not None]


@pytest.mark.parametrize(
    "text,pieces",
    [
        ('[f(a=1, b="x")]', ["[f(", "a=1,", ' b="x")', "]"]),
        (
            '[f(a="x, (y)", b=[1, (2, 3)], c={"k": ","})]',
            ["[f(", 'a="x, (y)",', " b=[1, (2, 3)],", ' c={"k": ","})', "]"],
        ),
        ("[f(), g.h i(x='a\\'),')]", ["[f(", ")", ", g.h i(", "x='a\\'),')", "]"]),
        ("f(a=1)", ["f(", "a=1)"]),
        ("[]", ["[]"]),
        ("Sorry, I cannot (really) help.", ["Sorry, I cannot (really) help."]),
    ],
)
def test_step_boundaries(text, pieces):
    cuts = [0, *_boundaries(text)]
    assert [text[a:b] for a, b in zip(cuts, [*cuts[1:], len(text)]) if a < b] == pieces


def test_answer_so_far_sets_the_scanner_state():
    assert first_step_end('[f(a="x', ', y", b=2)') == 5  # still inside the string: the first "," is text
    assert first_step_end("[f(a=[1", ", 2], b=1)") == 5  # inside a list
    assert first_step_end("[f(a=1)", ", g(") == 4  # between calls: "," separates calls, "(" opens g
    assert first_step_end("", "   [ f (") == 8


_LETTERS = "abcdefghijklmnopqrstuvwxyz_"
_identifiers = st.text(_LETTERS, min_size=1, max_size=6)
_strings = st.text(st.sampled_from(list("ab ,()[]{}=\"'\\\n")), max_size=8)
_values = st.recursive(
    st.none() | st.booleans() | st.integers() | _strings,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_strings, children, max_size=3),
    max_leaves=8,
)
_names = st.builds(lambda a, b: f"{a}.{b}" if b else a, _identifiers, _identifiers | st.just(""))
_calls = st.lists(st.builds(Call, _names, st.dictionaries(_identifiers, _values, max_size=3)), max_size=3)


@settings(max_examples=200, deadline=None)
@given(_calls)
def test_boundaries_are_the_opens_separators_and_closes_the_parser_finds(calls):
    text = render_calls(calls)
    expected = []
    for span in locate_pythonic_calls(text):
        expected.append(text.index("(", span.start) + 1)
        for next_start in span.arg_starts[1:]:
            expected.append(text.rindex(",", 0, next_start) + 1)
        expected.append(span.close + 1)
    assert _boundaries(text) == expected


def test_docstring_examples():
    assert doctest.testmod(scanner_module).failed == 0
