"""Tool calls read and written in the pythonic, JSON and Hermes formats: examples, errors, round trips."""

import doctest
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rftfast.answer.calls as calls_module
from rftfast.answer import (
    ANSWER_FORMATS,
    FORMATS,
    detect_format,
    locate_pythonic_calls,
    parse_answer,
    parse_calls,
    render_calls,
)
from rftfast.data.record import Call, ParseError

# --------------------------------------------------------------------------------------------------------------
# Strategies, and equality that tells 1 from 1.0 from True
# --------------------------------------------------------------------------------------------------------------

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
identifiers = st.builds(str.__add__, st.sampled_from(_LETTERS), st.text(_LETTERS + "0123456789", max_size=8))
# ToolACE-style names: identifiers joined by dots or single inner spaces ("Get Weather", "pkg.sub.f").
function_names = st.builds(
    lambda first, rest: first + "".join(sep + part for sep, part in rest),
    identifiers,
    st.lists(st.tuples(st.sampled_from([".", " "]), identifiers), max_size=2),
)
awkward_characters = st.sampled_from(list("\"'\\\n\t\r\x00{}[](),=:<>/ é€😀\u2028"))
# Surrogates included: every Python str, even an unpaired half, must survive the trip.
strings = st.text(st.characters(exclude_categories=()) | awkward_characters, max_size=12)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | strings
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(strings, children, max_size=4),
    max_leaves=12,
)
calls_strategy = st.lists(st.builds(Call, function_names, st.dictionaries(identifiers, values, max_size=4)), max_size=3)


def typed(value):
    """`value` with every scalar tagged by its type, so that 1, 1.0 and True (equal in Python) differ."""
    if isinstance(value, dict):
        return ("dict", tuple((key, typed(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("list", tuple(typed(item) for item in value))
    if isinstance(value, float):
        return ("float", repr(value))  # also tells -0.0 from 0.0
    return (type(value).__name__, value)


def typed_calls(calls):
    return [(call.name, typed(call.arguments)) for call in calls]


# --------------------------------------------------------------------------------------------------------------
# Pythonic: reading
# --------------------------------------------------------------------------------------------------------------


def test_the_example_from_the_docs():
    text = '[f(a=1, b="x"), pkg.g(c=[1, {"k": -2.5}])]'
    assert typed_calls(parse_calls(text)) == typed_calls(
        [Call("f", {"a": 1, "b": "x"}), Call("pkg.g", {"c": [1, {"k": -2.5}]})]
    )


@pytest.mark.parametrize(
    "text,expected",
    [
        ("f(a=1)", [Call("f", {"a": 1})]),
        ("f()", [Call("f", {})]),
        ("[f()]", [Call("f", {})]),
        ("[]", []),
        ("  [  ]  ", []),
        ("f(), g(x=2)", [Call("f"), Call("g", {"x": 2})]),
        ('[Get Weather(city="Paris")]', [Call("Get Weather", {"city": "Paris"})]),
        ('[  Get  Weather  (city="Paris")]', [Call("Get  Weather", {"city": "Paris"})]),
        ("[Sports.Team Stats.v2(team='x')]", [Call("Sports.Team Stats.v2", {"team": "x"})]),
        ("[f(a=1,), g(),]", [Call("f", {"a": 1}), Call("g")]),
        ('\n[\n  f(\n    a = 1 ,\n    b = "x"\n  )\n]\n', [Call("f", {"a": 1, "b": "x"})]),
        ("f(my.arg=1, my-arg=2, _x=3)", [Call("f", {"my.arg": 1, "my-arg": 2, "_x": 3})]),
    ],
)
def test_pythonic_calls(text, expected):
    assert typed_calls(parse_calls(text)) == typed_calls(expected)


@pytest.mark.parametrize(
    "literal,value",
    [
        ("0", 0),
        ("-7", -7),
        ("+7", 7),
        ("123456789012345678901234567890", 123456789012345678901234567890),
        ("1.0", 1.0),
        ("-2.5", -2.5),
        ("1e3", 1000.0),
        ("-2.5E-3", -0.0025),
        ("1.5e+10", 1.5e10),
        (".5", 0.5),
        ("5.", 5.0),
        ("-0.0", -0.0),
        ("True", True),
        ("False", False),
        ("None", None),
        ("true", True),
        ("false", False),
        ("null", None),
        ('"x"', "x"),
        ("'x'", "x"),
        ('""', ""),
        ("''", ""),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'it\'s'", "it's"),
        ('"it\'s"', "it's"),
        ("'say \"hi\"'", 'say "hi"'),
        (r'"a\nb\tc\\d\re"', "a\nb\tc\\d\re"),
        (r'"\u00e9\U0001F600\x41"', "é😀A"),
        ('"é😀"', "é😀"),
        (r'"C:\path"', "C:\\path"),  # unknown escapes keep their backslash, as in Python
        (r'"\ud83d\ude00"', "\ud83d\ude00"),  # surrogate halves stay halves, as in Python
        ('"a\nb"', "a\nb"),  # a raw newline inside quotes is taken as it is
        ('"(a=1), ]"', "(a=1), ]"),
        ("[]", []),
        ("[1, [2, [3, [4]]]]", [1, [2, [3, [4]]]]),
        ("[1, 2,]", [1, 2]),
        ("(1, 2)", [1, 2]),
        ("()", []),
        ("(1,)", [1]),
        ("(1)", 1),
        ("( [1] )", [1]),
        ("{}", {}),
        ("{\"k\": -2.5, 'j': [True, None]}", {"k": -2.5, "j": [True, None]}),
        ('{"a": {"b": {"c": [{"d": 1e-5}]}}}', {"a": {"b": {"c": [{"d": 1e-5}]}}}),
        ('{"k": 1,}', {"k": 1}),
    ],
)
def test_pythonic_values(literal, value):
    (call,) = parse_calls(f"f(v={literal})")
    assert typed(call.arguments["v"]) == typed(value)


def test_floats_stay_floats_and_ints_stay_ints():
    (call,) = parse_calls("f(a=1, b=1.0, c=1e0, d=True)")
    assert [type(v) for v in call.arguments.values()] == [int, float, float, bool]


def test_locate_pythonic_calls_reports_where_arguments_begin():
    text = ' [f(a=1, b="x)"), g()]'
    spans = locate_pythonic_calls(text)
    assert [(s.call.name, s.start, s.arg_starts, s.close) for s in spans] == [("f", 2, (4, 9), 15), ("g", 18, (), 20)]
    assert [text[s.close] for s in spans] == [")", ")"]


# --------------------------------------------------------------------------------------------------------------
# Pythonic: writing
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "calls,text",
    [
        ([], "[]"),
        ([Call("f")], "[f()]"),
        (
            [Call("f", {"a": 1, "b": "x"}), Call("pkg.g", {"c": [1, {"k": -2.5}]})],
            '[f(a=1, b="x"), pkg.g(c=[1, {"k": -2.5}])]',
        ),
        ([Call("Get Weather", {"city": "Paris"})], '[Get Weather(city="Paris")]'),
        (
            [Call("f", {"a": True, "b": None, "c": 1.0, "d": 1e-7, "e": (1, 2)})],
            "[f(a=True, b=None, c=1.0, d=1e-07, e=[1, 2])]",
        ),
        ([Call("f", {"s": 'say "hi"\n\\ é\x00'})], r'[f(s="say \"hi\"\n\\ é\u0000")]'),
    ],
)
def test_render_pythonic(calls, text):
    assert render_calls(calls) == text
    assert typed_calls(parse_calls(text)) == typed_calls(
        [Call(c.name, json.loads(json.dumps(c.arguments))) for c in calls]
    )


# --------------------------------------------------------------------------------------------------------------
# JSON and Hermes
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ('[{"name": "f", "arguments": {"a": 1, "b": 1.0}}]', [Call("f", {"a": 1, "b": 1.0})]),
        ('{"name": "f", "arguments": {"a": 1}}', [Call("f", {"a": 1})]),
        ('{"name": "f", "parameters": {"a": 1}}', [Call("f", {"a": 1})]),
        ('{"name": "f", "arguments": "{\\"a\\": [1, null]}"}', [Call("f", {"a": [1, None]})]),
        ('{"name": "f", "arguments": ""}', [Call("f")]),
        ('{"name": "f"}', [Call("f")]),
        ('{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}', [Call("f", {"a": 1})]),
        ("  [ ]  ", []),
        (
            '[{"name": "Get Weather", "arguments": {"city": "Paris"}}, {"name": "g", "arguments": {}}]',
            [Call("Get Weather", {"city": "Paris"}), Call("g")],
        ),
    ],
)
def test_json_calls(text, expected):
    assert typed_calls(parse_calls(text, "json")) == typed_calls(expected)


def test_hermes_reads_every_block_and_ignores_the_text_around_them():
    text = (
        'Let me look that up.\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n'
        'and also <tool_call>[{"name": "g", "parameters": {}}, {"name": "h"}]</tool_call> done'
    )
    assert typed_calls(parse_calls(text, "hermes")) == typed_calls([Call("f", {"a": 1}), Call("g"), Call("h")])
    assert parse_calls("I cannot help with that.", "hermes") == []


def test_render_json_and_hermes():
    calls = [Call("f", {"a": 1, "b": "é"}), Call("g")]
    f_json, g_json = '{"name": "f", "arguments": {"a": 1, "b": "é"}}', '{"name": "g", "arguments": {}}'
    assert render_calls(calls, "json") == f"[{f_json}, {g_json}]"
    assert render_calls(calls, "hermes") == f"<tool_call>\n{f_json}\n</tool_call>\n<tool_call>\n{g_json}\n</tool_call>"


def test_hermes_argument_mentioning_the_closing_tag_round_trips():
    calls = [Call("f", {"html": "<tool_call>x</tool_call>"})]
    assert "</tool_call>x" not in render_calls(calls, "hermes")
    assert parse_calls(render_calls(calls, "hermes"), "hermes") == calls


# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------

DEEP = "[" * 5000

MALFORMED = [
    # (format, text, position, part of the message)
    ("pythonic", "", 0, "expected a function name"),
    ("pythonic", "   ", 3, "expected a function name"),
    ("pythonic", "[", 1, "expected a function name"),
    ("pythonic", "(a=1)", 0, "expected a function name"),
    ("pythonic", "[f(a=1)", 7, "expected ',' or ']'"),
    ("pythonic", "[f(a=1)]]", 8, "expected end of text"),
    ("pythonic", "[f(a=1)] extra", 9, "expected end of text"),
    ("pythonic", "f(a=1) extra", 7, "expected ',' or end of text"),
    ("pythonic", "[f(a=1) g(b=2)]", 8, "expected ',' or ']'"),
    ("pythonic", "[f(a=1),, g()]", 8, "expected a function name"),
    ("pythonic", "f", 1, "expected '(' after the function name 'f'"),
    ("pythonic", "f a=1)", 3, "expected '(' after the function name 'f a'"),
    ("pythonic", "f(", 2, "expected an argument name or ')'"),
    ("pythonic", "f(a=1", 5, "expected ',' or ')' after the argument 'a'"),
    ("pythonic", "[f(a=1, b=2]", 11, "expected ',' or ')' after the argument 'b'"),
    ("pythonic", "f(a=1 b=2)", 6, "expected ',' or ')'"),
    ("pythonic", "f(a 1)", 4, "expected '=' after the argument name 'a'"),
    ("pythonic", "f(1)", 2, "expected an argument name"),
    ("pythonic", 'f("a"=1)', 2, "expected an argument name"),
    ("pythonic", "f(a=1, a=2)", 7, "duplicate argument 'a'"),
    ("pythonic", "f(a=)", 4, "expected a value"),
    ("pythonic", "f(a=-)", 4, "expected a value"),
    ("pythonic", "f(a=", 4, "expected a value"),
    ("pythonic", "f(a=celsius)", 4, "bare word 'celsius'"),
    ("pythonic", "f(a=1.2.3)", 7, "expected ',' or ')'"),
    ("pythonic", "f(a=1_000)", 5, "expected ',' or ')'"),
    ("pythonic", 'f(a="x)', 4, "unterminated string"),
    ("pythonic", "f(a='x)", 4, "unterminated string"),
    ("pythonic", 'f(a="x\\")', 4, "unterminated string"),
    ("pythonic", 'f(a="x\\', 4, "unterminated string"),
    ("pythonic", r'f(a="\u12")', 5, "expected 4 hex digits after \\u"),
    ("pythonic", r'f(a="\xZZ")', 5, "expected 2 hex digits after \\x"),
    ("pythonic", r'f(a="\U00110000")', 5, "beyond the last Unicode code point"),
    ("pythonic", "f(a=[1, 2)", 9, "expected ',' or ']'"),
    ("pythonic", "f(a=[1 2])", 7, "expected ',' or ']'"),
    ("pythonic", "f(a=(1, 2])", 9, "expected ',' or ')'"),
    ("pythonic", "f(a={k: 1})", 5, "expected a string key or '}'"),
    ("pythonic", "f(a={1: 1})", 5, "expected a string key or '}'"),
    ("pythonic", 'f(a={"k" 1})', 9, "expected ':' after the key 'k'"),
    ("pythonic", 'f(a={"k": 1)', 11, "expected ',' or '}'"),
    ("pythonic", "f(a=" + "1" * 5000 + ")", 4, "too long"),
    ("pythonic", "f(a=" + DEEP, None, "nested too deeply"),
    ("json", "", 0, "invalid JSON"),
    ("json", "[", 1, "invalid JSON"),
    ("json", '[{"name": "f"}', 14, "expected ',' or ']'"),
    ("json", '[{"name": "f"},]', 15, "invalid JSON"),
    ("json", '[{"name": "f"} {"name": "g"}]', 15, "expected ',' or ']'"),
    ("json", '{"name": "f"} extra', 14, "found more text"),
    ("json", "{'name': 'f'}", 1, "invalid JSON"),
    ("json", '{"name": "f", "arguments": {"a": }}', 33, "invalid JSON"),
    ("json", "[1]", 1, "expected a call object"),
    ("json", '"f"', 0, "expected a call object"),
    ("json", '[{"arguments": {}}]', 1, 'non-empty string "name"'),
    ("json", '[{"name": "f"}, {"name": 3}]', 16, 'non-empty string "name"'),
    ("json", '[{"name": ""}]', 1, 'non-empty string "name"'),
    ("json", '[{"name": "f", "arguments": [1]}]', 1, "arguments of 'f' to be an object"),
    ("json", '[{"name": "f", "arguments": "{bad"}]', 1, "arguments string of 'f' is not valid JSON"),
    ("json", '[{"name": "f", "arguments": "[1]"}]', 1, "arguments of 'f' to be an object"),
    ("json", '{"name": "f", "arguments": {"a": ' + "1" * 5000 + "}}", 0, "invalid JSON"),
    ("json", DEEP, None, "invalid JSON"),
    ("hermes", '<tool_call>{"name": "f"}', 0, "unclosed '<tool_call>'"),
    ("hermes", 'ok <tool_call>{"name": "f"}</tool_call> <tool_call>{"name": "g"}', 40, "unclosed '<tool_call>'"),
    ("hermes", "ok </tool_call>", 3, "without an opening"),
    ("hermes", "<tool_call></tool_call>", 11, "invalid JSON"),
    ("hermes", 'x <tool_call>\n{"name": "f",}\n</tool_call>', 27, "invalid JSON"),
    ("hermes", '<tool_call>{"name": "f"} junk</tool_call>', 25, "found more text"),
    ("hermes", '<tool_call>{"name": "f"}</tool_call><tool_call>{"name": 1}</tool_call>', 47, '"name"'),
]


@pytest.mark.parametrize("format,text,position,message", MALFORMED)
def test_malformed_input_raises_parse_error_at_the_problem(format, text, position, message):
    with pytest.raises(ParseError, match=None) as raised:
        parse_calls(text, format)
    assert message in str(raised.value)
    assert 0 <= raised.value.position <= len(text)
    if position is not None:
        assert raised.value.position == position, str(raised.value)
    assert raised.value.text == text


@pytest.mark.parametrize(
    "call,format,match",
    [
        (Call(""), "pythonic", r"calls\[0\]\.name: expected a non-empty string"),
        (Call(""), "json", r"calls\[0\]\.name"),
        (Call("f(x)"), "pythonic", "cannot be written as a pythonic function name"),
        (Call(" f"), "pythonic", "cannot be written as a pythonic function name"),
        (Call("f\ng"), "pythonic", "cannot be written as a pythonic function name"),
        (Call("f", {"a b": 1}), "pythonic", "cannot be written as a pythonic argument name"),
        (Call("f", {"1a": 1}), "pythonic", "cannot be written as a pythonic argument name"),
        (Call("f", {1: 1}), "json", "argument names must be strings"),
        (Call("f", {"a": float("nan")}), "json", r"calls\[0\]\.arguments\['a'\]: nan"),
        (Call("f", {"a": [float("inf")]}), "pythonic", r"\['a'\]\[0\]: inf"),
        (Call("f", {"a": {1: 2}}), "hermes", "dict keys must be strings"),
        (Call("f", {"a": {1, 2}}), "pythonic", "cannot write a set"),
    ],
)
def test_render_refuses_calls_that_would_not_read_back(call, format, match):
    with pytest.raises(ValueError, match=match):
        render_calls([call], format)


def test_unknown_format_is_a_value_error_naming_the_argument():
    with pytest.raises(ValueError, match="format: expected one of"):
        parse_calls("f()", "yaml")
    with pytest.raises(ValueError, match="format: expected one of"):
        render_calls([Call("f")], "xml")


def test_render_wants_a_list_of_calls():
    with pytest.raises(ValueError, match="calls: expected a list of Call, got Call"):
        render_calls(Call("f"))


def test_text_must_be_a_string():
    with pytest.raises(TypeError, match="text: expected str"):
        parse_calls(b"f()")


# --------------------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------------------


# One example drives every format: generating nested calls costs more than parsing them.
@settings(max_examples=200, deadline=None)
@given(calls=calls_strategy)
def test_render_then_parse_gives_back_the_calls(calls):
    for format in FORMATS:
        assert typed_calls(parse_calls(render_calls(calls, format), format)) == typed_calls(calls), format


@settings(max_examples=100, deadline=None)
@given(calls=calls_strategy, data=st.data())
def test_a_cut_rendering_fails_cleanly(calls, data):
    """No proper prefix of a pythonic or JSON answer parses; one of Hermes blocks gives the calls it holds."""
    for format in ("pythonic", "json"):
        text = render_calls(calls, format)
        cut = data.draw(st.integers(0, len(text) - 1))
        with pytest.raises(ParseError) as raised:
            parse_calls(text[:cut], format)
        assert 0 <= raised.value.position <= cut
    text = render_calls(calls, "hermes")
    cut = data.draw(st.integers(0, len(text)))
    try:
        parsed = parse_calls(text[:cut], "hermes")
    except ParseError as e:
        assert 0 <= e.position <= cut
    else:
        assert parsed == calls[: len(parsed)]


garbage = st.text(st.sampled_from(list("[](){},=:\"'\\ .-+eE01aTfnx<>/_\n")) | st.characters(), max_size=40)
tagged_garbage = st.builds("<tool_call>{}</tool_call>".format, garbage)


@settings(max_examples=300, deadline=None)
@given(text=garbage | tagged_garbage)
def test_arbitrary_text_raises_nothing_but_parse_error(text):
    for format in FORMATS:
        try:
            parse_calls(text, format)
        except ParseError as e:
            assert 0 <= e.position <= len(text)


def test_docstring_examples():
    assert doctest.testmod(calls_module).failed == 0


# --------------------------------------------------------------------------------------------------------------
# A model's whole answer: the format detected, and prose that is no call in any format
# --------------------------------------------------------------------------------------------------------------

QWEN_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
LLAMA_CALL = '{"name": "get_weather", "parameters": {"city": "Paris"}}'


@pytest.mark.parametrize(
    "text, format",
    [
        (LLAMA_CALL, "json"),
        (f"\n  {LLAMA_CALL}\n", "json"),
        ('[{"name": "f", "arguments": {}}, {"name": "g", "arguments": {}}]', "json"),
        ('[ \n\t{"name": "f"}]', "json"),
        ('{"answer": 42}', "json"),  # no call, but JSON or nothing: read as JSON, it fails as a malformed call
        ('{"name": "f", "arguments": {"note": "<tool_call>"}}', "json"),  # the tag inside a JSON string
        ('{"name": "f", "argu', "json"),  # cut short: a JSON call that fails, not prose
        (QWEN_CALL, "hermes"),
        (f"  {QWEN_CALL}  ", "hermes"),
        (f"Let me check.\n{QWEN_CALL}", "hermes"),
        (f"{QWEN_CALL}\n{QWEN_CALL}", "hermes"),
        ('<tool_call>{"name": "f"', "hermes"),  # unclosed: Hermes that fails
        ('[get_weather(city="Paris")]', "pythonic"),
        ('get_weather(city="Paris")', "pythonic"),
        ('[f(a={"k": 1})]', "pythonic"),  # a dict argument is no JSON call
        ("[]", "pythonic"),
        ("", "pythonic"),
        ("   ", "pythonic"),
        ("I cannot help with that.", "pythonic"),
        ('Here it is: {"name": "f"}', "pythonic"),  # JSON after prose is not a JSON answer
        ("</tool_call>", "pythonic"),  # only an opening tag makes Hermes
    ],
)
def test_detect_format(text, format):
    assert detect_format(text) == format


@pytest.mark.parametrize(
    "text, format, expected",
    [
        (LLAMA_CALL, "json", [Call("get_weather", {"city": "Paris"})]),
        (QWEN_CALL, "hermes", [Call("get_weather", {"city": "Paris"})]),
        (
            f"Sure.\n{QWEN_CALL}\n{QWEN_CALL.replace('Paris', 'Oslo')}",
            "hermes",
            [
                Call("get_weather", {"city": "Paris"}),
                Call("get_weather", {"city": "Oslo"}),
            ],
        ),
        ('[{"name": "f", "parameters": {"a": 1}}, {"name": "g"}]', "json", [Call("f", {"a": 1}), Call("g")]),
        ("[f(a=1), g()]", "pythonic", [Call("f", {"a": 1}), Call("g")]),
        ("[]", "pythonic", []),
    ],
)
def test_parse_answer_reads_each_format_given_or_detected(text, format, expected):
    assert typed_calls(parse_answer(text, format)) == typed_calls(expected)
    assert typed_calls(parse_answer(text, "auto")) == typed_calls(expected)


@pytest.mark.parametrize(
    "text, format",
    [
        ('[get_weather(city="Paris")]', "json"),
        ('[get_weather(city="Paris")]', "hermes"),  # no block: prose to Hermes, not an empty list of calls
        (LLAMA_CALL, "pythonic"),
        (LLAMA_CALL, "hermes"),
        (QWEN_CALL, "pythonic"),
        (QWEN_CALL, "json"),
        ("I cannot help with that.", "hermes"),
        ("I cannot help with that.", "json"),
        ("I cannot help with that.", "auto"),
        ('{"answer": 42}', "auto"),
    ],
)
def test_parse_answer_refuses_another_format_or_prose(text, format):
    with pytest.raises(ParseError):
        parse_answer(text, format)


def test_parse_answer_wants_a_known_format_and_a_string():
    assert (*FORMATS, "auto") == ANSWER_FORMATS
    with pytest.raises(ValueError, match="format: expected one of"):
        parse_answer("f()", "yaml")
    with pytest.raises(TypeError, match="text: expected str"):
        parse_answer(b"f()", "auto")
    with pytest.raises(TypeError, match="text: expected str"):
        detect_format(None)


@settings(max_examples=100, deadline=None)
@given(calls=calls_strategy)
def test_every_rendering_is_detected_and_read_back(calls):
    for format in FORMATS:
        if format == "hermes" and not calls:
            continue  # no block at all: no text, which is no call
        text = render_calls(calls, format)
        assert typed_calls(parse_answer(text, "auto")) == typed_calls(calls), format


@settings(max_examples=300, deadline=None)
@given(text=garbage | tagged_garbage)
def test_arbitrary_answers_raise_nothing_but_parse_error(text):
    for format in ANSWER_FORMATS:
        try:
            parse_answer(text, format)
        except ParseError as e:
            assert 0 <= e.position <= len(text)
