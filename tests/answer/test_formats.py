"""Steps, step stopping and partial reading in the JSON and Hermes call formats (issue 16, item 1).

The pythonic format's own tests are test_steps.py, test_scanner.py and test_partial.py. Here, for the other two:
answers cut into the same decisions (a call has as many steps in every format), the streaming cuts found exactly
after each fragment (checked against renderings built fragment by fragment, not against the walk itself), cuts on
token streams, unfinished answers read as the steps they finished, and bad format names refused.
"""

import doctest
import json

import pytest
from hypothesis import given, settings

import rftfast.answer.walker as walker_module
from rftfast.answer import (
    FORMATS,
    HERMES_CLOSE,
    HERMES_OPEN,
    PartialCall,
    StepScanner,
    cut_at_step,
    first_step_end,
    parse_calls,
    read_partial,
    render_calls,
    segment_calls,
)
from rftfast.data.record import Call, ParseError
from tests.answer.test_calls import calls_strategy, typed
from tests.support.tiny import tiny_tokenizer

OTHER_FORMATS = ("json", "hermes")


def pieces(text, format):
    return [(step.kind, step.text_in(text)) for step in segment_calls(text, format)]


def scanned(text, format, answer_so_far=""):
    """`text` cut where the streaming scanner ends steps, fed one character at a time."""
    scanner = StepScanner(answer_so_far, format)
    cuts = [0, *[i + 1 for i, char in enumerate(text) if scanner.feed(char) is not None]]
    return [text[a:b] for a, b in zip(cuts, [*cuts[1:], len(text)]) if a < b]


# --------------------------------------------------------------------------------------------------------------
# Segmentation of finished answers
# --------------------------------------------------------------------------------------------------------------

HERMES_2_PRO = '<tool_call>\n{ "arguments": {"city": "Paris", "days": 3}, "name": "get_weather"}\n</tool_call> '


@pytest.mark.parametrize(
    "format,text,expected",
    [
        (
            "json",
            '[{"name": "f", "arguments": {"a": 1, "b": "x"}}]',
            [("open", '[{"name": "f", "arguments": {'), ("arg", '"a": 1, '), ("arg", '"b": "x"'), ("close", "}}]")],
        ),
        (  # Llama-3.1: one object, "parameters"
            "json",
            '{"name": "get_weather", "parameters": {"city": "Paris"}}',
            [("open", '{"name": "get_weather", "parameters": {'), ("arg", '"city": "Paris"'), ("close", "}}")],
        ),
        (
            "json",
            '[{"name": "f", "arguments": {"a": 1}}, {"name": "g", "arguments": {}}]',
            [
                ("open", '[{"name": "f", "arguments": {'),
                ("arg", '"a": 1'),
                ("close", "}}"),
                ("open", ', {"name": "g", "arguments": {'),
                ("close", "}}]"),
            ],
        ),
        ("json", "[]", [("close", "[]")]),
        # Commas, braces and tags inside values are not cuts.
        (
            "json",
            '{"name": "f", "arguments": {"q": "a}, \\"b\\": {", "xs": [1, {"k": "v}"}]}}',
            [
                ("open", '{"name": "f", "arguments": {'),
                ("arg", '"q": "a}, \\"b\\": {", '),
                ("arg", '"xs": [1, {"k": "v}"}]'),
                ("close", "}}"),
            ],
        ),
        (  # Qwen2.5: a block per call, prose before them ignored but kept in the first step
            "hermes",
            'Sure.\n<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>\n'
            '<tool_call>\n{"name": "g", "arguments": {}}\n</tool_call>',
            [
                ("open", 'Sure.\n<tool_call>\n{"name": "f", "arguments": {'),
                ("arg", '"a": 1'),
                ("close", "}}\n</tool_call>"),
                ("open", '\n<tool_call>\n{"name": "g", "arguments": {'),
                ("close", "}}\n</tool_call>"),
            ],
        ),
        (  # Hermes-2-Pro writes the arguments first: its steps follow its decisions
            "hermes",
            HERMES_2_PRO,
            [
                ("arg", '<tool_call>\n{ "arguments": {"city": "Paris", '),
                ("arg", '"days": 3'),
                ("close", "}, "),
                ("open", '"name": "get_weather"}\n</tool_call> '),
            ],
        ),
        (
            "hermes",
            '<tool_call>\n{"arguments": {}, "name": "g"}\n</tool_call>',
            [("close", '<tool_call>\n{"arguments": {}, '), ("open", '"name": "g"}\n</tool_call>')],
        ),
        ("hermes", "No function fits.", [("close", "No function fits.")]),
        # No arguments member at all; OpenAI's wrapper, its arguments a JSON string (one step for all of them).
        (
            "json",
            '[{"name": "f"}, {"type": "function", "function": {"name": "g", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}}]',
            [
                ("open", '[{"name": "f"'),
                ("close", "}"),
                ("open", ', {"type": "function", "function": {"name": "g", "arguments": '),
                ("arg", '"{\\"a\\": 1, \\"b\\": 2}"'),
                ("close", "}}]"),
            ],
        ),
    ],
)
def test_segment_calls(format, text, expected):
    assert pieces(text, format) == expected


@pytest.mark.parametrize(
    "format,text",
    [
        ("json", '[{"name": "f", "arguments": {"a": 1}}'),
        ("json", '{"name": "f", "arguments": {"a": 1}} trailing'),
        ("hermes", '<tool_call>\n{"name": "f", "arguments": {"a": 1}}'),
        ("hermes", '<tool_call>\n{"name": "f", "arguments": {"a": 1}\n</tool_call>'),
        # Valid JSON the walk would read otherwise than the parser: refused rather than cut wrongly.
        ("json", '{"name": "f", "parameters": {"a": 1}, "arguments": {"b": 2}}'),
    ],
)
def test_segment_calls_raises_parse_error_on_answers_it_cannot_cut(format, text):
    with pytest.raises(ParseError):
        segment_calls(text, format)


def check_segments_describe_the_calls(text, calls, format):
    """The steps tile `text`, one "open", one "arg" per argument and one "close" per call, as many as pythonic."""
    steps = segment_calls(text, format)
    assert "".join(step.text_in(text) for step in steps) == text
    assert all(a.end == b.start for a, b in zip(steps, steps[1:])) and steps[0].start == 0
    expected_kinds = [kind for call in calls for kind in ["open", *["arg"] * len(call.arguments), "close"]]
    assert [step.kind for step in steps] == (expected_kinds or ["close"])
    assert len(steps) == len(segment_calls(render_calls(calls)))  # the same decisions as the pythonic answer's
    arg_texts = iter(step.text_in(text) for step in steps if step.kind == "arg")
    for call in calls:
        for key, value in call.arguments.items():
            member = json.loads("{" + next(arg_texts).rstrip().removesuffix(",") + "}")
            assert typed(member) == typed({key: value})
    opens = [step.text_in(text) for step in steps if step.kind == "open"]
    assert [json.dumps(call.name, ensure_ascii=False) in step for call, step in zip(calls, opens)] == [True] * len(
        calls
    )


@settings(max_examples=150, deadline=None)
@given(calls=calls_strategy)
def test_segments_of_rendered_calls_tile_the_text_and_each_argument_decodes(calls):
    for format in OTHER_FORMATS:
        check_segments_describe_the_calls(render_calls(calls, format), calls, format)


# --------------------------------------------------------------------------------------------------------------
# Each step ends right after its fragment: an oracle that builds the rendering fragment by fragment
# --------------------------------------------------------------------------------------------------------------


def built(calls, format):
    """(text, scanner ends, segment ends) of `calls` in `format`, assembled from their fragments.

    The scanner ends a step just after the arguments' "{", each "," between arguments and their "}"; the segments
    end where the next fragment begins (the first key, the next key, the "}"), and at the end of each call.
    """
    dump = lambda value: json.dumps(value, ensure_ascii=False)  # noqa: E731 - the renderer's json settings
    text, scanner_ends, segment_ends = "", [], []
    for i, call in enumerate(calls):
        if format == "json":
            text += "[" if i == 0 else ", "
        else:
            text += ("\n" if i else "") + HERMES_OPEN + "\n"
        text += '{"name": ' + dump(call.name) + ', "arguments": {'
        scanner_ends.append(len(text))
        for j, (key, value) in enumerate(call.arguments.items()):
            if j:
                text += ","
                scanner_ends.append(len(text))
                text += " "
            segment_ends.append(len(text))  # the previous step ends where this key begins
            member = dump(key) + ": " + dump(value)
            text += member.replace("</", "<\\/") if format == "hermes" else member
        segment_ends.append(len(text))  # the last argument (or the open step) ends at the "}"
        text += "}"
        scanner_ends.append(len(text))
        text += "}" + ("\n" + HERMES_CLOSE if format == "hermes" else "")
        segment_ends.append(len(text))
    if format == "json":
        text = text + "]" if calls else "[]"
        segment_ends = segment_ends[:-1] + [len(text)] if calls else [len(text)]
    elif not calls:
        segment_ends = [0]
    return text, scanner_ends, segment_ends


@settings(max_examples=150, deadline=None)
@given(calls=calls_strategy)
def test_steps_end_right_after_each_fragment(calls):
    for format in OTHER_FORMATS:
        text, scanner_ends, segment_ends = built(calls, format)
        assert text == render_calls(calls, format)
        scanner = StepScanner(format=format)
        assert [i + 1 for i, char in enumerate(text) if scanner.feed(char) is not None] == scanner_ends
        assert [step.end for step in segment_calls(text, format)] == segment_ends


@pytest.mark.parametrize(
    "format,text,expected",
    [
        ("json", '[{"name": "f", "arguments": {"a": "x, y", "b": [1, 2]}}]', ['[{"name": "f", "arguments": {',
                                                                            '"a": "x, y",', ' "b": [1, 2]}', "}]"]),
        ("json", '{"name": "f"}', ['{"name": "f"}']),  # no arguments member: the call is one step
        ("hermes", HERMES_2_PRO, ['<tool_call>\n{ "arguments": {"city": "Paris",', ' "days": 3}',
                                  ', "name": "get_weather"', "}\n</tool_call> "]),
        # Prose never ends a step; in Hermes it may come before the blocks.
        ("json", "Sorry, I can't {do} that.", ["Sorry, I can't {do} that."]),
        ("hermes", 'I will call it, {ok}? <tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>',
         ['I will call it, {ok}? <tool_call>\n{"name": "f", "arguments": {', "}", "}\n</tool_call>"]),
        # A "</tool_call>" ends its block wherever it stands, as in the parser; a written-out "<\/" does not.
        ("hermes", '<tool_call>\n{"name": "f", "arguments": {"a": "<\\/tool_call>", "b": 1}}\n</tool_call>',
         ['<tool_call>\n{"name": "f", "arguments": {', '"a": "<\\/tool_call>",', ' "b": 1}', "}\n</tool_call>"]),
    ],
)  # fmt: skip
def test_scanner_pieces(format, text, expected):
    assert scanned(text, format) == expected


def test_answer_so_far_sets_the_scanner_state():
    assert first_step_end('{"name": "f", "arguments": {"a": "x', ', y", "b": 2}', "json") == 5  # inside a string
    assert first_step_end('{"name": "f", "arguments": {"a": [1', ', 2], "b": 1}', "json") == 5  # inside a list
    assert first_step_end('[{"name": "f", "arguments": {}}', ', {"name": "g", "arguments": {', "json") == 30
    assert first_step_end("<tool_call>\n{", '"name": "f", "arguments": {', "hermes") == 27
    rest_of_the_open_step = 'call>\n{"name": "f", "arguments": {'  # its tag split in two
    assert first_step_end("<tool_", rest_of_the_open_step, "hermes") == len(rest_of_the_open_step)
    assert first_step_end("", '{"name": "f", "arguments": {', "hermes") is None  # outside any block: prose


# --------------------------------------------------------------------------------------------------------------
# Step stopping on token streams
# --------------------------------------------------------------------------------------------------------------

STREAM_CALLS = [
    [Call("get_weather", {"city": "Paris", "unit": "celsius"})],
    [Call("get_weather", {"city": "Oslo"}), Call("get_time", {"tz": "CET"})],
    [Call("plan", {"steps": [{"k": None, "say": 'a "b", }'}], "n": 2.5})],
    [Call("ping")],
]


@pytest.fixture(scope="module")
def stream_tokenizer():
    """The run's byte-level BPE, trained on the calls in every format, so tokens straddle the step ends."""
    corpus = tuple(render_calls(calls, format) for calls in STREAM_CALLS for format in FORMATS)
    return tiny_tokenizer(corpus, 500)


@pytest.mark.parametrize("format", FORMATS)
@pytest.mark.parametrize("calls", STREAM_CALLS)
def test_cut_at_step_on_token_streams(calls, format, stream_tokenizer):
    """Generation cut step by step: every cut is at the first token completing a step, and the cuts tile the
    answer's tokens, one cut per step end the character scanner finds."""
    tok = stream_tokenizer
    text = render_calls(calls, format)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    start, cuts = 0, []
    while True:
        so_far = tok.decode(ids[:start])
        end = cut_at_step(ids[start:], tok.decode, so_far, format)
        if end is None:
            break
        piece = tok.decode(ids[start : start + end])
        assert first_step_end(so_far, piece, format) is not None
        assert first_step_end(so_far, tok.decode(ids[start : start + end - 1]), format) is None
        cuts.append(start + end)
        start += end
    # Each cut is the first token boundary at or after a step's last character; a token that completes two
    # steps (an empty "{}") takes both, as in the pythonic format.
    texts = scanned(text, format)
    char_ends = [len("".join(texts[: k + 1])) for k in range(len(texts) - 1)]
    boundaries = [len(tok.decode(ids[:k])) for k in range(len(ids) + 1)]
    assert cuts == sorted({next(k for k, end in enumerate(boundaries) if end >= c) for c in char_ends})


def test_cut_at_step_is_the_format_s():
    """The same tokens stop at different places in different formats: the format is not guessed."""
    text = '{"name": "f", "arguments": {"a": "x(", "b": 1}}'
    ids = list(range(len(text)))  # one token per character
    decode = lambda token_ids: "".join(text[i] for i in token_ids)  # noqa: E731
    assert text[: cut_at_step(ids, decode, "", "json")] == '{"name": "f", "arguments": {'
    assert cut_at_step(ids, decode, "", "pythonic") is None  # "{" cannot start a pythonic call: no step
    assert cut_at_step(ids, decode, "", "hermes") is None  # no <tool_call> block


# --------------------------------------------------------------------------------------------------------------
# Unfinished answers
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "format,text,calls,status",
    [
        ("json", "", [], "whole"),
        ("json", '[{"name": "get_w', [PartialCall(None, False, (), False)], "whole"),
        ("json", '[{"name": "f", "arguments": ', [PartialCall("f", False, (), False)], "whole"),  # no "{" yet
        ("json", '[{"name": "f", "arguments": {"a": 1, "b":', [PartialCall("f", True, (("a", 1),), False, "b")],
         "whole"),
        ("json", '[{"name": "f", "arguments": {"a": 1, "b": "x"}}, {"name": "g", "arguments": {',
         [PartialCall("f", True, (("a", 1), ("b", "x")), True), PartialCall("g", True, (), False)], "whole"),
        ("json", '{"name": "f", "arguments": {"a": tru', [PartialCall("f", True, (), False, "a")], "whole"),
        ("json", '{"name": "f", "arguments": {"a": @@, "b": 2', [PartialCall("f", True, (), False, "b")], "broken"),
        ("json", '{"name": "f", "arguments": {"a" = 1', [PartialCall("f", True, (), False)], "tail"),
        ("json", "Sorry, no.", [], "broken"),  # prose with a "," in it, as in the pythonic format
        ("hermes", "Let me check. <tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1,",
         [PartialCall("f", True, (("a", 1),), False)], "whole"),
        ("hermes", '<tool_call>\n{"name": "f", "arguments": {"a": 1}\n</tool_call>',  # closed before the call
         [PartialCall("f", True, (("a", 1),), True)], "broken"),
        ("hermes", '</tool_call>', [], "broken"),
        ("hermes", '<tool_call>\n{ "arguments": {"city": "Paris", "days": 3',
         [PartialCall(None, False, (("city", "Paris"),), False, "days", name_last=True)], "whole"),
        ("hermes", '<tool_call>\n{ "arguments": {"city": "Paris"}, "name": "get_w',
         [PartialCall(None, False, (("city", "Paris"),), True, name_last=True)], "whole"),
        ("hermes", '<tool_call>\n{ "arguments": {"city": "Paris"}, "name": "g"',
         [PartialCall("g", True, (("city", "Paris"),), True, name_last=True)], "whole"),
    ],
)  # fmt: skip
def test_read_partial(format, text, calls, status):
    assert read_partial(text, format=format) == (calls, status)


@settings(max_examples=100, deadline=None)
@given(calls=calls_strategy.filter(bool))
def test_a_finished_answer_reads_back_as_its_calls_all_finished(calls):
    for format in FORMATS:
        text = render_calls(calls, format)
        partial, status = read_partial(text, format=format)
        assert status == "whole"
        assert [(c.name, typed(dict(c.arguments)), c.opened, c.closed) for c in partial] == [
            (call.name, typed(call.arguments), True, True) for call in calls
        ]


@settings(max_examples=100, deadline=None)
@given(calls=calls_strategy.filter(bool))
def test_at_each_step_end_the_same_steps_are_finished_in_every_format(calls):
    """Cut after its k-th step, an answer has the same calls, arguments and pending names in every format."""

    def finished(format):
        text = render_calls(calls, format)
        pieces = scanned(text, format)
        states = []
        for k in range(1, len(pieces)):
            partial, status = read_partial("".join(pieces[:k]), format=format)
            assert status == "whole"
            states.append([(c.name, typed(dict(c.arguments)), c.closed) for c in partial if c.opened])
        return states

    pythonic = finished("pythonic")
    assert finished("json") == pythonic and finished("hermes") == pythonic


# --------------------------------------------------------------------------------------------------------------
# Format names
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda f: segment_calls("[f()]", f),
        lambda f: StepScanner("", f),
        lambda f: first_step_end("", "[f(", f),
        lambda f: cut_at_step([1], str, "", f),
        lambda f: read_partial("[f(", format=f),
    ],
)
@pytest.mark.parametrize("bad", ["auto", "Hermes", "yaml", None])
def test_a_bad_format_name_is_a_value_error(call, bad):
    with pytest.raises(ValueError, match="format: expected one of"):
        call(bad)


def test_parse_calls_and_the_walk_agree_on_rendered_calls():
    calls = [Call("Get Weather", {"city": "Zürich", "note": 'say "hi"\n</tool_call>'}), Call("pkg.g")]
    for format in OTHER_FORMATS:
        text = render_calls(calls, format)
        assert parse_calls(text, format) == calls
        assert read_partial(text, format=format).calls == [
            PartialCall("Get Weather", True, tuple(calls[0].arguments.items()), True),
            PartialCall("pkg.g", True, (), True),
        ]


def test_docstring_examples():
    assert doctest.testmod(walker_module).failed == 0
