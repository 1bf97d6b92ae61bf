"""Pythonic answers cut into search steps, and those cuts mapped onto tokens of locally trained tokenizers."""

import doctest
import re
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

import rftfast.answer.steps as steps_module
from rftfast.answer import Step, parse_calls, render_calls, segment_calls, step_token_boundaries
from rftfast.data.record import Call, ParseError
from tests.answer.test_calls import calls_strategy, typed


def pieces(text):
    return [(step.kind, step.text_in(text)) for step in segment_calls(text)]


# --------------------------------------------------------------------------------------------------------------
# Segmentation
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ('[f(a=1, b="x")]', [("open", "[f("), ("arg", "a=1, "), ("arg", 'b="x"'), ("close", ")]")]),
        (
            "[f(a=1), g(b=2)]",
            [("open", "[f("), ("arg", "a=1"), ("close", ")"), ("open", ", g("), ("arg", "b=2"), ("close", ")]")],
        ),
        ("[f()]", [("open", "[f("), ("close", ")]")]),
        ("f(a=1)", [("open", "f("), ("arg", "a=1"), ("close", ")")]),
        ("[]", [("close", "[]")]),
        ('[Get Weather(city="Paris")]', [("open", "[Get Weather("), ("arg", 'city="Paris"'), ("close", ")]")]),
        # Brackets, commas and "=" inside values are not cuts.
        (
            '[f(q="a), g(b=", xs=[1, (2, 3)], d={"k": "v)"})]',
            [
                ("open", "[f("),
                ("arg", 'q="a), g(b=", '),
                ("arg", "xs=[1, (2, 3)], "),
                ("arg", 'd={"k": "v)"}'),
                ("close", ")]"),
            ],
        ),
        # Whitespace goes with the step before the next significant character; the ends go to the first and last.
        (
            '  [ f ( a = 1 ,  b="x" ) ,\n g( ) ] \n',
            [
                ("open", "  [ f ( "),
                ("arg", "a = 1 ,  "),
                ("arg", 'b="x" '),
                ("close", ")"),
                ("open", " ,\n g( "),
                ("close", ") ] \n"),
            ],
        ),
        ("[f(a=1,),]", [("open", "[f("), ("arg", "a=1,"), ("close", "),]")]),
    ],
)
def test_segment_calls(text, expected):
    assert pieces(text) == expected


@pytest.mark.parametrize("text", ["", "[f(a=1)", "f(a=1, b=)", '[f(a="x)]', "[f(a=1)] trailing"])
def test_segment_calls_raises_parse_error_on_text_that_does_not_parse(text):
    with pytest.raises(ParseError):
        segment_calls(text)


OPEN_STEP = re.compile(r"\s*[\[,]?\s*(?P<name>[^(]+?)\s*\(\s*")


def check_segments_describe_the_calls(text, calls):
    """The steps tile `text` exactly, in the order open, arg*, close per call, and each arg step is its argument."""
    steps = segment_calls(text)
    assert "".join(step.text_in(text) for step in steps) == text
    assert all(a.end == b.start for a, b in zip(steps, steps[1:])) and steps[0].start == 0
    expected_kinds = [kind for call in calls for kind in ["open", *["arg"] * len(call.arguments), "close"]]
    assert [step.kind for step in steps] == (expected_kinds or ["close"])
    arg_texts = iter(step.text_in(text) for step in steps if step.kind == "arg")
    for call in calls:
        for key, value in call.arguments.items():
            (parsed,) = parse_calls(f"f({next(arg_texts)})")  # a trailing ", " is allowed there
            assert typed(parsed.arguments) == typed({key: value})
    opens = [OPEN_STEP.fullmatch(step.text_in(text)) for step in steps if step.kind == "open"]
    assert [match and match["name"] for match in opens] == [call.name for call in calls]


@settings(max_examples=150, deadline=None)
@given(calls=calls_strategy)
def test_segments_of_rendered_calls_tile_the_text_and_each_argument_parses(calls):
    check_segments_describe_the_calls(render_calls(calls), calls)


def test_segments_of_hand_spaced_calls_describe_the_calls():
    text = '\n[ Get Weather ( city = "Paris" ,days=3 ,) ,  pkg.g(x=[1, {"k": None}])]  '
    check_segments_describe_the_calls(text, parse_calls(text))


# --------------------------------------------------------------------------------------------------------------
# Token boundaries
# --------------------------------------------------------------------------------------------------------------

CORPUS_CALLS = [
    [Call("f", {"a": 1, "b": "x"})],
    [Call("Get Weather", {"city": "Paris", "days": 3})],
    [Call("f", {"a": 1}), Call("g")],
    [Call("search", {"query": "best pizza near me", "limit": 10, "open_now": True})],
    [Call("pkg.convert", {"amount": -2.5, "from": "USD", "to": "EUR"})],
    [Call("book_flight", {"origin": "JFK", "destination": "LHR", "passengers": [{"name": "Ann", "age": 31}]})],
    [Call("send_email", {"to": "bob@example.com", "subject": "Hi", "body": "See you at 5.\nBest"})],
    [Call("calc", {"expression": "2*(3+4)", "precision": 1e-6}), Call("log", {"message": None})],
]
CORPUS = [render_calls(calls) for calls in CORPUS_CALLS] * 4


@pytest.fixture(scope="module")
def word_level_tokenizer():
    """Whole words and punctuation runs (`")]` is one token), trained here on the corpus: no download."""
    model = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    model.pre_tokenizer = pre_tokenizers.Whitespace()
    model.train_from_iterator(CORPUS, trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    return PreTrainedTokenizerFast(tokenizer_object=model, unk_token="[UNK]")


@pytest.fixture(scope="module")
def byte_level_tokenizer():
    """A small GPT-style byte-level BPE, trained here on the corpus: any text tokenizes, spaces merge into words."""
    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    model.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=model)


def test_token_boundaries_with_a_word_level_tokenizer(word_level_tokenizer):
    text = '[f(a=1, b="x")]'
    ids = word_level_tokenizer(text, add_special_tokens=False)["input_ids"]
    tokens = word_level_tokenizer.convert_ids_to_tokens(ids)
    assert tokens == ["[", "f", "(", "a", "=", "1", ",", "b", '="', "x", '")]']
    steps = segment_calls(text)
    # '[f(' | 'a=1, ' | 'b="x"' | ')]': the last two cuts fall inside '")]', so both go to its end.
    assert step_token_boundaries(text, steps, word_level_tokenizer) == [3, 7, 11, 11]
    assert step_token_boundaries(text, steps, word_level_tokenizer, offset_tokens=5) == [8, 12, 16, 16]


def test_a_boundary_inside_a_token_goes_to_its_end(byte_level_tokenizer):
    text = "[f(a=1, b=2)]"
    encoding = byte_level_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    steps = segment_calls(text)
    boundaries = step_token_boundaries(text, steps, byte_level_tokenizer)
    arg_a_end = steps[1].end  # the "b" of "b=2"; byte-level BPE merges the space before it into " b"
    (straddling,) = [i for i, (s, e) in enumerate(encoding["offset_mapping"]) if s < arg_a_end < e]
    assert boundaries[1] == straddling + 1


def check_boundaries(text, tokenizer):
    """Tokens before a step's boundary start before the step ends; tokens from it on start at or after."""
    steps = segment_calls(text)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    starts = [start for start, _ in encoding["offset_mapping"]]
    boundaries = step_token_boundaries(text, steps, tokenizer)
    assert boundaries == sorted(boundaries) and boundaries[-1] == len(encoding["input_ids"])
    for step, boundary in zip(steps, boundaries):
        assert all(start < step.end for start in starts[:boundary])
        assert all(start >= step.end for start in starts[boundary:])
        decoded = tokenizer.decode(encoding["input_ids"][:boundary], clean_up_tokenization_spaces=False)
        assert decoded.startswith(text[: step.end])
    assert step_token_boundaries(text, steps, tokenizer, offset_tokens=7) == [b + 7 for b in boundaries]


@pytest.mark.parametrize("calls", CORPUS_CALLS)
def test_token_boundaries_on_the_corpus(calls, byte_level_tokenizer):
    check_boundaries(render_calls(calls), byte_level_tokenizer)


@settings(max_examples=50, deadline=None)
@given(calls=calls_strategy.filter(bool))
def test_token_boundaries_on_any_rendered_calls(calls, byte_level_tokenizer):
    check_boundaries(render_calls(calls), byte_level_tokenizer)


def test_token_boundaries_refuse_bad_arguments(word_level_tokenizer):
    text = "[f(a=1)]"
    steps = segment_calls(text)
    with pytest.raises(ValueError, match="tokenizer: expected a fast"):
        step_token_boundaries(text, steps, SimpleNamespace(is_fast=False))
    with pytest.raises(ValueError, match="offset_tokens"):
        step_token_boundaries(text, steps, word_level_tokenizer, offset_tokens=-1)
    with pytest.raises(ValueError, match=r"steps\[0\]"):
        step_token_boundaries(text, [Step("open", 0, 99)], word_level_tokenizer)
    with pytest.raises(ValueError, match=r"steps\[1\]"):
        step_token_boundaries(text, [Step("open", 0, 5), Step("arg", 0, 3)], word_level_tokenizer)


def test_docstring_examples():
    assert doctest.testmod(steps_module).failed == 0
