"""rftfast's BFCL checker: a unit test per rule, and case-for-case agreement with BFCL's own checker.

The agreement tests build a right answer from each sampled BFCL item's ground truth (the first
acceptable value of each parameter, optional parameters left out), mutate it in many ways, and ask
both checkers. They skip when `bfcl_eval` is not installed (`pip install --no-deps bfcl-eval==2026.3.23`).
"""

from __future__ import annotations

import copy
import functools
import random
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rftfast.data.record import Call
from rftfast.eval import CATEGORIES, CheckResult, check
from rftfast.eval.checker import category_kind, category_language, normalize_string


@pytest.fixture(scope="module")
def oracle():
    pytest.importorskip("bfcl_eval", reason="BFCL's checker is the oracle: pip install --no-deps bfcl-eval")
    from tests.support import bfcl_oracle

    return bfcl_oracle


# --- Hand-written cases, one rule each ------------------------------------------------------------------

WEATHER = {
    "name": "weather.forecast",
    "description": "Forecast for a city.",
    "parameters": {
        "type": "dict",
        "properties": {
            "city": {"type": "string"},
            "days": {"type": "integer"},
            "unit": {"type": "string"},
            "ratio": {"type": "float"},
            "hourly": {"type": "boolean"},
            "temps": {"type": "array", "items": {"type": "float"}},
            "cities": {"type": "array", "items": {"type": "string"}},
            "point": {"type": "tuple", "items": {"type": "float"}},
            "filters": {"type": "dict"},
            "stops": {"type": "array", "items": {"type": "dict"}},
            "extra": {"type": "string"},
        },
        "required": ["city", "days"],
    },
}


def weather_answer(**params) -> list[dict]:
    """The possible answer: city and days required, unit optional, plus whatever a test adds."""
    return [{"weather.forecast": {"city": ["New York, NY", "NYC"], "days": [3], "unit": ["celsius", ""], **params}}]


def forecast(**arguments) -> Call:
    return Call("weather.forecast", arguments)


def forecast_answer(**acceptable) -> dict:
    return {"weather.forecast": acceptable}


def judge(arguments: dict, *, answer: list | None = None, name: str = "weather.forecast", **options) -> CheckResult:
    return check([WEATHER], [Call(name, arguments)], answer or weather_answer(), "simple", **options)


def assert_verdict(result: CheckResult, category: str) -> None:
    assert result.category == category, result
    assert result.valid == (category == "ok")
    assert result.category in CATEGORIES


def test_a_right_call_is_ok():
    result = judge({"city": "NYC", "days": 3})
    assert_verdict(result, "ok")
    assert result and result.message == ""


def test_calls_in_bfcl_decoded_form_and_docs_in_openai_wrapper():
    tools = [{"type": "function", "function": WEATHER}]
    assert_verdict(check(tools, [{"weather.forecast": {"city": "NYC", "days": 3}}], weather_answer(), "simple"), "ok")
    arguments = '{"city": "NYC", "days": 3}'  # OpenAI sends arguments as JSON text
    openai_call = {"type": "function", "function": {"name": "weather.forecast", "arguments": arguments}}
    assert_verdict(check([WEATHER], [openai_call], weather_answer(), "simple"), "ok")


@pytest.mark.parametrize(
    "calls",
    [
        "weather.forecast(city='NYC')",
        None,
        {"weather.forecast": {}},
        [42],
        [{}],
        [{"a": {}, "b": {}}],
        [{"weather.forecast": "city=NYC"}],
    ],
)
def test_anything_but_a_list_of_calls_is_a_parse_failure(calls):
    assert_verdict(check([WEATHER], calls, weather_answer(), "simple"), "parse_failure")


def test_simple_wants_exactly_one_call():
    call = Call("weather.forecast", {"city": "NYC", "days": 3})
    assert_verdict(check([WEATHER], [call, call], weather_answer(), "simple"), "wrong_count")
    assert_verdict(check([WEATHER], [], weather_answer(), "simple"), "wrong_count")


def test_the_name_must_match_exactly():
    assert_verdict(judge({"city": "NYC", "days": 3}, name="weather_forecast"), "wrong_function")
    assert_verdict(judge({"city": "NYC", "days": 3}, name="Weather.Forecast"), "wrong_function")


def test_dots_read_as_underscores_for_models_that_cannot_write_dots():
    assert_verdict(judge({"city": "NYC", "days": 3}, name="weather_forecast", dots_to_underscores=True), "ok")
    # BFCL renames the expected call, so the dotted name no longer matches for such a model.
    assert_verdict(judge({"city": "NYC", "days": 3}, dots_to_underscores=True), "wrong_function")


def test_a_parameter_the_docs_require_must_be_given():
    assert_verdict(judge({"days": 3}), "missing_required")


def test_a_parameter_the_answer_requires_must_be_given_even_if_the_docs_call_it_optional():
    assert_verdict(judge({"city": "NYC", "days": 3}, answer=weather_answer(ratio=[0.5])), "missing_required")
    assert_verdict(judge({"city": "NYC", "days": 3}, answer=weather_answer(ratio=[0.5, ""])), "ok")


def test_a_parameter_outside_the_docs_or_the_answer_is_unexpected():
    assert_verdict(judge({"city": "NYC", "days": 3, "country": "US"}), "unexpected_parameter")
    # `extra` is in the docs, not in the answer: still unexpected.
    assert_verdict(judge({"city": "NYC", "days": 3, "extra": "x"}), "unexpected_parameter")


def test_an_optional_parameter_may_be_given_an_acceptable_value():
    assert_verdict(judge({"city": "NYC", "days": 3, "unit": "Celsius"}), "ok")
    assert_verdict(judge({"city": "NYC", "days": 3, "unit": "kelvin"}), "wrong_value")


@pytest.mark.parametrize("days", ["3", 3.0, True, [3], None])
def test_types_compare_exactly(days):
    assert_verdict(judge({"city": "NYC", "days": days}), "wrong_type")


def test_an_int_is_accepted_for_a_float_in_python():
    assert_verdict(judge({"city": "NYC", "days": 3, "ratio": 2}, answer=weather_answer(ratio=[2.0])), "ok")
    assert_verdict(judge({"city": "NYC", "days": 3, "ratio": True}, answer=weather_answer(ratio=[1.0])), "wrong_type")


def test_a_tuple_is_accepted_for_a_tuple_parameter_only():
    answer = weather_answer(point=[[1.5, 2.5]], temps=[[1.5], ""])
    assert_verdict(judge({"city": "NYC", "days": 3, "point": (1.5, 2.5)}, answer=answer), "ok")
    assert_verdict(judge({"city": "NYC", "days": 3, "point": [1.5, 2.5]}, answer=answer), "ok")
    assert_verdict(judge({"city": "NYC", "days": 3, "point": (1.5, 2.5), "temps": (1.5,)}, answer=answer), "wrong_type")


def test_items_are_type_checked_one_level_deep_without_int_for_float():
    answer = weather_answer(temps=[[1.0, 2.0]])
    assert_verdict(judge({"city": "NYC", "days": 3, "temps": [1.0, 2.0]}, answer=answer), "ok")
    assert_verdict(judge({"city": "NYC", "days": 3, "temps": [1, 2]}, answer=answer), "wrong_type")
    # Items may also have the type of the answer's items: here the answer wrote ints.
    assert_verdict(judge({"city": "NYC", "days": 3, "temps": [1, 2]}, answer=weather_answer(temps=[[1, 2]])), "ok")


def test_the_optional_marker_lets_any_items_through_and_reads_as_an_empty_list():
    answer = weather_answer(temps=[""])
    assert_verdict(judge({"city": "NYC", "days": 3, "temps": []}, answer=answer), "ok")
    assert_verdict(judge({"city": "NYC", "days": 3, "temps": ["x"]}, answer=answer), "wrong_value")


def test_a_value_of_the_answers_type_is_a_variable_compared_exactly():
    answer = weather_answer(filters=["my_filters"])
    assert_verdict(judge({"city": "NYC", "days": 3, "filters": "my_filters"}, answer=answer), "ok")
    assert_verdict(judge({"city": "NYC", "days": 3, "filters": "My Filters"}, answer=answer), "wrong_value")
    assert_verdict(judge({"city": "NYC", "days": 3, "filters": 7}, answer=answer), "wrong_type")


@pytest.mark.parametrize("city", ["new york ny", "NEW-YORK,NY", "New_York. NY", "nyc", "N.Y.C."])
def test_strings_compare_after_normalisation(city):
    assert_verdict(judge({"city": city, "days": 3}), "ok")


@pytest.mark.parametrize("city", ["New York", "NY C!", "Boston"])
def test_strings_that_differ_after_normalisation_are_wrong(city):
    assert_verdict(judge({"city": city, "days": 3}), "wrong_value")


def test_normalisation_drops_spaces_and_some_punctuation_and_unifies_quotes():
    assert normalize_string("April 1, 2024") == normalize_string("april 1 2024") == "april12024"
    assert normalize_string("It's a_b-c/d*e^f.") == 'it"sabcdef'
    assert normalize_string("x!?") == "x!?"


def test_lists_compare_in_order_with_normalised_strings():
    answer = weather_answer(cities=[["New York", "Paris"]])
    assert_verdict(judge({"city": "NYC", "days": 3, "cities": ["new york", "PARIS"]}, answer=answer), "ok")
    assert_verdict(judge({"city": "NYC", "days": 3, "cities": ["Paris", "New York"]}, answer=answer), "wrong_value")


def test_dicts_compare_key_by_key():
    answer = weather_answer(filters=[{"min": [1], "label": ["Warm Days"], "max": [9, ""]}])
    right = {"city": "NYC", "days": 3, "filters": {"min": 1, "label": "warm days"}}
    assert_verdict(judge(right, answer=answer), "ok")
    for filters in ({"min": 2, "label": "warm days"}, {"min": 1}, {"min": 1, "label": "warm days", "x": 0}):
        assert_verdict(judge({**right, "filters": filters}, answer=answer), "wrong_value")


def test_lists_of_dicts_compare_dict_by_dict_in_order():
    answer = weather_answer(stops=[[{"at": ["Rome"]}, {"at": ["Oslo"]}]])
    assert_verdict(judge({"city": "NYC", "days": 3, "stops": [{"at": "rome"}, {"at": "oslo"}]}, answer=answer), "ok")
    assert_verdict(
        judge({"city": "NYC", "days": 3, "stops": [{"at": "oslo"}, {"at": "rome"}]}, answer=answer), "wrong_value"
    )
    assert_verdict(judge({"city": "NYC", "days": 3, "stops": [{"at": "rome"}]}, answer=answer), "wrong_value")


def test_parallel_calls_match_in_any_order():
    answer = [forecast_answer(city=["Paris"], days=[1]), forecast_answer(city=["Oslo"], days=[2])]
    calls = [forecast(city="Oslo", days=2), forecast(city="Paris", days=1)]
    assert_verdict(check([WEATHER], calls, answer, "parallel"), "ok")
    assert_verdict(check([WEATHER], calls[:1], answer, "parallel"), "wrong_count")
    wrong = [calls[0], forecast(city="Paris", days=5)]
    assert_verdict(check([WEATHER], wrong, answer, "live_parallel_multiple"), "wrong_value")


def test_parallel_matching_is_greedy_as_in_bfcl():
    # A perfect matching exists (first expected <- second call), but the first expected call takes the
    # first call that fits it, and the second expected call is left with nothing.
    answer = [forecast_answer(city=["Paris"], days=[1, 2]), forecast_answer(city=["Paris"], days=[1])]
    calls = [forecast(city="Paris", days=1), forecast(city="Paris", days=2)]
    assert not check([WEATHER], calls, answer, "parallel").valid
    assert check([WEATHER], calls[::-1], answer, "parallel").valid


def test_multiple_judges_against_the_doc_the_answer_names():
    other = {"name": "news", "description": "", "parameters": {"type": "dict", "properties": {}, "required": []}}
    calls = [Call("weather.forecast", {"city": "NYC", "days": 3})]
    assert_verdict(check([other, WEATHER], calls, weather_answer(), "multiple"), "ok")
    assert_verdict(check([other, WEATHER], [Call("news", {})], weather_answer(), "live_multiple"), "wrong_function")


@pytest.mark.parametrize("category", ["irrelevance", "live_irrelevance"])
def test_irrelevance_wants_no_call(category):
    assert_verdict(check([WEATHER], [], None, category), "ok")
    assert_verdict(check([WEATHER], "I cannot help with that.", None, category), "ok")
    assert_verdict(check([WEATHER], [Call("weather.forecast", {})], None, category), "wrong_count")


def test_relevance_wants_some_call():
    assert_verdict(check([WEATHER], [Call("weather.forecast", {})], None, "live_relevance"), "ok")
    assert_verdict(check([WEATHER], [], None, "live_relevance"), "wrong_count")


def test_category_names():
    assert category_kind("live_parallel_multiple") == "parallel"
    assert category_kind("live_multiple") == "multiple"
    assert category_kind("simple_python") == category_kind("java") == "simple"
    assert category_kind("live_irrelevance") == "irrelevance"
    assert category_language("simple_java") == "java"
    assert category_language("simple_javascript") == "javascript"
    assert category_language("live_simple") == "python"
    with pytest.raises(ValueError, match="unknown BFCL category"):
        check([WEATHER], [], weather_answer(), "multi_turn_base")


def test_answer_naming_an_unknown_function_is_an_error():
    with pytest.raises(ValueError, match="not among the function docs"):
        check([WEATHER], [Call("x", {})], [{"x": {}}], "multiple")


JAVA_DOC = {
    "name": "Store.put",
    "description": "",
    "parameters": {
        "type": "dict",
        "properties": {
            "size": {"type": "long"},
            "ids": {"type": "Array", "items": {"type": "integer"}},
            "names": {"type": "ArrayList", "items": {"type": "String"}},
            "opts": {"type": "HashMap"},
            "ratio": {"type": "float"},
        },
        "required": ["size"],
    },
}
JAVA_ANSWER = [
    {
        "Store.put": {
            "size": [5],
            "ids": [[1, 2], ""],
            "names": [["a b"], ""],
            "opts": ["", {"k": ["v"]}],
            "ratio": ["", 0.5],
        }
    }
]


@pytest.mark.parametrize(
    ("arguments", "category"),
    [
        ({"size": "5L"}, "ok"),
        ({"size": "5"}, "wrong_type"),  # a long needs its L
        ({"size": 5}, "wrong_type"),  # Java values are source text
        ({"size": "6L"}, "wrong_value"),
        ({"size": "5L", "ids": "new int[]{1, 2}"}, "ok"),
        ({"size": "5L", "names": 'new ArrayList<>(Arrays.asList("A B"))'}, "ok"),
        ({"size": "5L", "opts": 'new HashMap<String, String>() {{ put("k", "V"); }}'}, "ok"),
        ({"size": "5L", "ratio": "0.5f"}, "ok"),
        ({"size": "5L", "ratio": "0.5"}, "wrong_type"),
    ],
)
def test_java_values_are_source_text_converted_by_type(arguments, category):
    assert_verdict(check([JAVA_DOC], [Call("Store.put", arguments)], JAVA_ANSWER, "simple_java"), category)


JS_DOC = {
    "name": "render",
    "description": "",
    "parameters": {
        "type": "dict",
        "properties": {
            "count": {"type": "Bigint"},
            "tags": {"type": "array", "items": {"type": "String"}},
            "style": {"type": "dict"},
            "title": {"type": "String"},
        },
        "required": ["count"],
    },
}
JS_ANSWER = [
    {"render": {"count": [7], "tags": [["x", "y"], ""], "style": ["", {"color": ["red"]}], "title": ["", "Hi"]}}
]


@pytest.mark.parametrize(
    ("arguments", "category"),
    [
        ({"count": "7n"}, "ok"),
        ({"count": "7"}, "wrong_type"),
        ({"count": 7}, "wrong_type"),
        ({"count": "7n", "tags": "['x', 'y']"}, "ok"),
        ({"count": "7n", "tags": "new Array('x', 'y')"}, "ok"),
        ({"count": "7n", "style": "{color: 'red'}"}, "ok"),
        ({"count": "7n", "title": "'hi'"}, "ok"),
    ],
)
def test_javascript_values_are_source_text_converted_by_type(arguments, category):
    assert_verdict(check([JS_DOC], [Call("render", arguments)], JS_ANSWER, "simple_javascript"), category)


def test_inputs_are_not_modified():
    calls = [{"weather.forecast": {"city": "NYC", "days": 3, "point": (1.0, 2.0), "cities": ["A b"]}}]
    answer = weather_answer(point=[[1.0, 2.0]], cities=[["a B"]])
    docs = [copy.deepcopy(WEATHER)]
    before = copy.deepcopy((docs, calls, answer))
    assert check(docs, calls, answer, "simple").valid
    assert (docs, calls, answer) == before


WRONG_SHAPES = (None, True, 0, -1, 2.5, "", "x", [], {}, [None], ["x"], {"k": None}, [[]], {"k": []}, [{}])
FUZZ_BASES = (  # (docs, decoded calls, possible answer, category), each judged "ok" before mutation
    (
        [WEATHER],
        [
            {
                "weather.forecast": {
                    "city": "NYC",
                    "days": 3,
                    "filters": {"a": "b"},
                    "stops": [{"s": "x"}],
                    "temps": [1.0],
                }
            }
        ],
        weather_answer(filters=[{"a": ["b"]}, ""], stops=[[{"s": ["x"]}]], temps=[[1.0]]),
        "simple",
    ),
    (
        [JAVA_DOC],
        [
            {
                "Store.put": {
                    "size": "5L",
                    "ids": "new int[]{1, 2}",
                    "opts": 'new HashMap<String, String>() {{ put("k", "v"); }}',
                }
            }
        ],
        JAVA_ANSWER,
        "simple_java",
    ),
    (
        [JS_DOC],
        [{"render": {"count": "7n", "tags": "['x', 'y']", "style": "{color: 'red'}"}}],
        JS_ANSWER,
        "simple_javascript",
    ),
    ([WEATHER], [{"weather.forecast": {"city": "NYC", "days": 3}}] * 2, weather_answer() * 2, "parallel"),
    ([JS_DOC, WEATHER], [{"weather.forecast": {"city": "NYC", "days": 3}}], weather_answer(), "multiple"),
)


def _key_paths(value, path=()):
    yield path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _key_paths(item, (*path, key))


def _replaced(root, path, value, delete):
    if not path:
        return value
    root = copy.deepcopy(root)
    parent = functools.reduce(lambda node, key: node[key], path[:-1], root)
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return root


def test_malformed_docs_or_answers_raise_value_error_and_malformed_calls_fail():
    """Fuzz (fixed seed): a wrong type or a missing key anywhere. Docs and answers of the wrong shape raise
    the documented ValueError (never TypeError or AttributeError); the model's calls never raise."""
    rng = random.Random(11)
    for base in FUZZ_BASES:
        assert check(base[0], base[1], base[2], base[3]).valid
    escaped = Counter()
    for _ in range(4000):
        inputs = list(rng.choice(FUZZ_BASES))
        which = rng.randrange(3)  # docs, calls or answer
        path = rng.choice(list(_key_paths(inputs[which])))
        inputs[which] = _replaced(inputs[which], path, rng.choice(WRONG_SHAPES), bool(path) and rng.random() < 0.2)
        try:
            assert check(*inputs).category in CATEGORIES
        except ValueError:
            if which == 1:
                escaped["ValueError for malformed calls"] += 1
        except Exception as e:  # noqa: BLE001 - what the test looks for
            escaped[f"{type(e).__name__} for malformed {('docs', 'calls', 'answer')[which]}"] += 1
    assert not escaped, escaped


# --- Agreement with BFCL's own checker -----------------------------------------------------------------

AST_SETS = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
    "simple_java",
    "simple_javascript",
)
RELEVANCE_SETS = ("irrelevance", "live_irrelevance", "live_relevance")
SAMPLE_SIZE = 150


@functools.cache
def sample_items(oracle, name: str) -> list[tuple[dict, list]]:
    """A deterministic sample of (test entry, ground truth) pairs from one BFCL set."""
    entries = oracle.load_entries(name)
    truths = oracle.load_ground_truth(name) if name in AST_SETS else [{"ground_truth": None}] * len(entries)
    pairs = list(zip(entries, [t["ground_truth"] for t in truths]))
    if len(pairs) > SAMPLE_SIZE:
        pairs = [pairs[i] for i in sorted(random.Random(name).sample(range(len(pairs)), SAMPLE_SIZE))]
    return pairs


class Case:
    """One BFCL item being mutated: its docs, its ground truth, and the right answer built from them."""

    def __init__(self, entry: dict, ground_truth: list, rng: random.Random):
        self.docs = {doc["name"]: doc for doc in entry["function"]}
        self.ground_truth = ground_truth
        self.rng = rng
        self.answer = [
            [name, concrete_arguments(args, self.docs[name])]
            for expected in ground_truth
            for name, args in expected.items()
        ]

    def spec(self, name: str, param: str) -> dict:
        doc = self.docs.get(name) or {"parameters": {"properties": {}}}  # a renamed call has no doc
        return doc["parameters"]["properties"].get(param, {})

    def acceptable(self, index: int, param: str) -> list:
        return next(iter(self.ground_truth[index].values())).get(param, [])


def concrete_arguments(expected_args: dict, doc: dict) -> dict:
    """The first acceptable value of each parameter the answer requires (optional ones left out)."""
    specs = doc["parameters"]["properties"]
    return {
        param: concrete_value(options[0], specs.get(param, {}))
        for param, options in expected_args.items()
        if options and "" not in options
    }


def concrete_value(value, spec: dict):
    """Acceptable dicts list acceptable values per key; a right value picks the first of each."""
    item_type = (spec.get("items") or {}).get("type")
    if spec.get("type") in ("dict", "HashMap") and isinstance(value, dict):
        return {key: choices[0] for key, choices in value.items() if "" not in choices}
    if item_type == "dict" and isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return [{key: choices[0] for key, choices in v.items() if "" not in choices} for v in value]
    return copy.deepcopy(value)


def as_decoded(calls: list) -> list[dict]:
    return [{name: args} for name, args in calls]


def pick_argument(case: Case, calls: list, where: Callable | None = None):
    """A random (call index, param) among the given arguments that satisfy `where`, or None."""
    slots = [(i, p) for i, (name, args) in enumerate(calls) for p in args if where is None or where(case, name, p)]
    return case.rng.choice(slots) if slots else None


def with_argument(case: Case, calls: list, make_value: Callable, where: Callable | None = None):
    slot = pick_argument(case, calls, where)
    if slot is None:
        return None
    index, param = slot
    calls[index][1][param] = make_value(calls[index][1][param], case.spec(calls[index][0], param), case.rng)
    return calls


def of_type(*types_: str) -> Callable:
    return lambda case, name, param: case.spec(name, param).get("type") in types_


def different_value(value, spec: dict, rng: random.Random):
    if type(value) is bool:
        return not value
    if type(value) in (int, float):
        return value + rng.choice([1, 2, 0.5, -3])
    if type(value) is str:
        return value + rng.choice(["zz", " extra", "9"])
    if type(value) is list:
        return value[:-1] if value and rng.random() < 0.5 else value + [value[0] if value else "zz"]
    if type(value) is dict:
        key = rng.choice(list(value)) if value and rng.random() < 0.5 else "zz_key"
        return {**value, key: different_value(value.get(key, 0), {}, rng)}
    return "zz"


def other_type_value(value, spec: dict, rng: random.Random):
    if type(value) is str:
        return rng.choice([42, 4.2, True, [value], {"v": value}, None])
    if type(value) is bool:
        return rng.choice(["true", 1, 1.0])
    if type(value) in (int, float):
        return rng.choice([str(value), bool(value), [value]])
    if type(value) is list:
        return rng.choice([str(value), tuple(value), {"items": value}])
    return str(value)


def restyled_string(value, spec: dict, rng: random.Random):
    """The same string to BFCL's normalisation: other case, spaces and punctuation."""
    if type(value) is not str:
        return value
    styled = value.upper() if rng.random() < 0.5 else value.swapcase()
    return rng.choice([" ", "-", "_", ""]).join(styled.split(" ")) + rng.choice(["", ".", " ", "*"])


def restyled_items(value, spec: dict, rng: random.Random):
    if type(value) is list:
        return [restyled_string(item, spec, rng) for item in value]
    if type(value) is dict:
        return {key: restyled_string(item, spec, rng) for key, item in value.items()}
    return value


def items_as_strings(value, spec: dict, rng: random.Random):
    return [str(item) for item in value] if type(value) is list and value else [1]


def items_as_ints(value, spec: dict, rng: random.Random):
    return [int(item) if type(item) is float else item for item in value] if type(value) is list else value


def mutate_drop_required(case: Case, calls: list):
    def required(case, name, param):
        return param in case.docs[name]["parameters"].get("required", [])

    return drop_argument(case, calls, required)


def mutate_drop_answer_only(case: Case, calls: list):
    def answer_only(case, name, param):
        return param not in case.docs[name]["parameters"].get("required", [])

    return drop_argument(case, calls, answer_only)


def drop_argument(case: Case, calls: list, where: Callable):
    slot = pick_argument(case, calls, where)
    if slot is None:
        return None
    del calls[slot[0]][1][slot[1]]
    return calls


def mutate_add_unknown(case: Case, calls: list):
    if not calls:
        return None
    calls[case.rng.randrange(len(calls))][1]["rftfast_unknown"] = 1
    return calls


def mutate_add_doc_param(case: Case, calls: list):
    """Give a parameter the docs define but the answer does not mention."""
    for index, (name, args) in enumerate(calls):
        expected = next(iter(case.ground_truth[index].values())) if index < len(case.ground_truth) else {}
        unused = [p for p in case.docs[name]["parameters"]["properties"] if p not in expected and p not in args]
        if unused:
            param = case.rng.choice(unused)
            args[param] = sample_of_type(case.spec(name, param).get("type"))
            return calls
    return None


def sample_of_type(declared: str | None):
    return {"integer": 1, "float": 1.5, "boolean": True, "array": ["a"], "tuple": [1.0], "dict": {"a": 1}}.get(
        declared, "value"
    )


def mutate_add_optional(case: Case, calls: list):
    """Give each optional parameter of the answer its first acceptable value that is not the marker."""
    added = False
    for index, (name, args) in enumerate(calls):
        for param, options in next(iter(case.ground_truth[index].values())).items():
            real = [option for option in options if option != ""]
            if param not in args and real:
                args[param] = concrete_value(real[0], case.spec(name, param))
                added = True
    return calls if added else None


def mutate_rename(new_name: Callable[[str], str]) -> Callable:
    def rename(case: Case, calls: list):
        if not calls:
            return None
        index = case.rng.randrange(len(calls))
        renamed = new_name(calls[index][0])
        if renamed == calls[index][0]:
            return None
        calls[index][0] = renamed
        return calls

    return rename


def mutate_all_dots_to_underscores(case: Case, calls: list):
    if not any("." in name for name, _ in calls):
        return None
    return [[name.replace(".", "_"), args] for name, args in calls]


def mutate_swap_first_two_values(case: Case, calls: list):
    """Two calls to the same function trade one argument: each call stays well-typed but wrong."""
    for i in range(len(calls)):
        for j in range(i + 1, len(calls)):
            if calls[i][0] == calls[j][0]:
                shared = [p for p in calls[i][1] if p in calls[j][1] and calls[i][1][p] != calls[j][1][p]]
                if shared:
                    param = case.rng.choice(shared)
                    calls[i][1][param], calls[j][1][param] = calls[j][1][param], calls[i][1][param]
                    return calls
    return None


def argument_mutation(make_value: Callable, where: Callable | None = None) -> Callable:
    return lambda case, calls: with_argument(case, calls, make_value, where)


def whole_mutation(change: Callable[[list], list | None]) -> Callable:
    return lambda case, calls: change(calls)


# Doc types by kind, across BFCL's Python, Java and JavaScript dialects.
LIST_TYPES = ("array", "tuple", "Array", "ArrayList")
INT_TYPES = ("integer", "long", "Bigint")
FLOAT_TYPES = ("float", "double")
MUTATIONS: dict[str, Callable] = {
    "as_is": whole_mutation(lambda calls: calls),
    "with_optional": mutate_add_optional,
    "reordered_arguments": whole_mutation(lambda calls: [[n, dict(reversed(list(a.items())))] for n, a in calls]),
    "reversed_calls": whole_mutation(lambda calls: calls[::-1] if len(calls) > 1 else None),
    "rotated_calls": whole_mutation(lambda calls: calls[1:] + calls[:1] if len(calls) > 2 else None),
    "swapped_values": mutate_swap_first_two_values,
    "wrong_value": argument_mutation(different_value),
    "wrong_string": argument_mutation(different_value, of_type("string", "String", "any")),
    "restyled_string": argument_mutation(restyled_string, of_type("string", "String", "any")),
    "restyled_items": argument_mutation(restyled_items, of_type(*LIST_TYPES, "dict", "HashMap")),
    "missing_required": mutate_drop_required,
    "missing_answer_param": mutate_drop_answer_only,
    "extra_unknown_param": mutate_add_unknown,
    "extra_doc_param": mutate_add_doc_param,
    "wrong_type": argument_mutation(other_type_value),
    "int_for_float": argument_mutation(lambda v, s, r: int(v) if type(v) is float else v, of_type(*FLOAT_TYPES)),
    "float_for_int": argument_mutation(lambda v, s, r: float(v) if type(v) is int else v, of_type(*INT_TYPES)),
    "bool_for_int": argument_mutation(lambda v, s, r: bool(v) if type(v) is int else v, of_type(*INT_TYPES)),
    "tuple_for_list": argument_mutation(lambda v, s, r: tuple(v) if type(v) is list else v, of_type(*LIST_TYPES)),
    "items_as_strings": argument_mutation(items_as_strings, of_type(*LIST_TYPES)),
    "items_as_ints": argument_mutation(items_as_ints, of_type(*LIST_TYPES)),
    "wrong_function": mutate_rename(lambda name: name + "_v2"),
    "dots_to_underscores": mutate_all_dots_to_underscores,
    "one_dot_to_underscore": mutate_rename(lambda name: name.replace(".", "_", 1)),
    "extra_call": whole_mutation(lambda calls: calls + [copy.deepcopy(calls[0])] if calls else None),
    "dropped_call": whole_mutation(lambda calls: calls[:-1] if calls else None),
    "no_call": whole_mutation(lambda calls: []),
    "two_names_in_a_call": whole_mutation(lambda calls: calls or None),
    "arguments_not_a_dict": whole_mutation(lambda calls: calls or None),
}
# Mutations of the decoded form itself, after the arguments are in place.
BROKEN_SHAPES: dict[str, Callable[[list], list]] = {
    "two_names_in_a_call": lambda decoded: [{**call, "extra_function": {}} for call in decoded],
    "arguments_not_a_dict": lambda decoded: [
        {name: list(args.values())} for call in decoded for name, args in call.items()
    ],
}
# Java and JavaScript values go to the checkers as source text, except under these mutations.
UNRENDERED = {"wrong_type"}


def mutated_answer(case: Case, mutation: str, language: str):
    calls = MUTATIONS[mutation](case, copy.deepcopy(case.answer))
    if calls is None:
        return None
    if language != "python" and mutation not in UNRENDERED:
        calls = [
            [name, {p: render_source(v, case.spec(name, p), language) for p, v in args.items()}] for name, args in calls
        ]
    decoded = as_decoded(calls)
    return BROKEN_SHAPES[mutation](decoded) if mutation in BROKEN_SHAPES else decoded


def render_source(value, spec: dict, language: str) -> str:
    """A value as the Java or JavaScript source text that BFCL converts back into it."""
    declared = spec.get("type")
    item = (spec.get("items") or {}).get("type")
    if language == "java":
        return render_java(value, declared, item)
    return render_javascript(value, declared, item)


def render_java(value, declared: str | None, item: str | None) -> str:
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return f"{value}L" if declared == "long" else str(value)
    if type(value) is float:
        return f"{value}f" if declared == "float" else repr(value)
    if type(value) in (list, tuple):
        if declared == "ArrayList":
            quoted = item in ("String", "char")
            elements = [f'"{v}"' if quoted else render_java(v, item, None) for v in value]
            return f"new ArrayList<>(Arrays.asList({', '.join(elements)}))"
        return f"new {item or 'Object'}[]{{{', '.join(render_java(v, item, None) for v in value)}}}"
    if type(value) is dict:
        puts = "".join(f'put("{k}", {java_literal(v)}); ' for k, v in value.items())
        return f"new HashMap<String, Object>() {{{{ {puts}}}}}"
    return str(value)


def java_literal(value) -> str:
    return f'"{value}"' if type(value) is str else render_java(value, None, None)


def render_javascript(value, declared: str | None, item: str | None) -> str:
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is int:
        return f"{value}n" if declared == "Bigint" else str(value)
    if type(value) is str:
        return f"'{value}'" if declared in ("String", None) else value
    if type(value) in (list, tuple):
        return "[" + ", ".join(render_javascript(v, item, None) for v in value) + "]"
    if type(value) is dict:
        return "{" + ", ".join(f"{k}: {render_javascript(v, None, None)}" for k, v in value.items()) + "}"
    return repr(value)


class Tally:
    """Agreement counts per mutation, and the first few disagreements to show."""

    def __init__(self):
        self.agree, self.total, self.valid, self.oracle_errors = Counter(), Counter(), Counter(), Counter()
        self.examples: list[str] = []

    def add(self, mutation: str, ours: CheckResult, theirs: bool, where: str) -> None:
        self.total[mutation] += 1
        self.valid[mutation] += theirs
        if ours.valid == theirs:
            self.agree[mutation] += 1
        elif len(self.examples) < 8:
            self.examples.append(f"{where} {mutation}: BFCL {theirs}, rftfast {ours}")

    def summary(self, name: str) -> str:
        rows = [
            f"{name} {m}: {self.agree[m]}/{self.total[m]} agree ({self.valid[m]} valid to BFCL)"
            for m in sorted(self.total)
        ]
        rows += [f"BFCL raised on {n} case(s) of {m}" for m, n in sorted(self.oracle_errors.items())]
        return "\n".join(rows + self.examples)

    @property
    def disagreements(self) -> int:
        return sum(self.total.values()) - sum(self.agree.values())


def compare(oracle, tally: Tally, docs, calls, ground_truth, category: str, mutation: str, where: str, **options):
    try:
        theirs = oracle.bfcl_valid(docs, copy.deepcopy(calls), ground_truth, category, **options)
    except Exception:  # BFCL's checker has no verdict on some inputs (it raises); nothing to compare
        tally.oracle_errors[mutation] += 1
        return
    ours = check(docs, calls, ground_truth, category, **options)
    tally.add(mutation, ours, theirs, where)


@pytest.mark.parametrize("name", AST_SETS)
def test_agrees_with_bfcl_on_mutated_answers(oracle, name):
    tally = Tally()
    language = category_language(name)
    for entry, ground_truth in sample_items(oracle, name):
        for mutation in MUTATIONS:
            case = Case(entry, ground_truth, random.Random(f"{entry['id']}:{mutation}"))
            calls = mutated_answer(case, mutation, language)
            if calls is None:
                continue
            compare(oracle, tally, entry["function"], calls, ground_truth, name, mutation, entry["id"])
            if mutation in ("as_is", "dots_to_underscores", "one_dot_to_underscore"):
                compare(
                    oracle,
                    tally,
                    entry["function"],
                    calls,
                    ground_truth,
                    name,
                    mutation + "+model_without_dots",
                    entry["id"],
                    dots_to_underscores=True,
                )
    print(tally.summary(name))
    assert tally.total["as_is"] > 0
    assert tally.disagreements == 0, tally.summary(name)
    assert sum(tally.oracle_errors.values()) <= sum(tally.total.values()) // 100, tally.summary(name)


@pytest.mark.parametrize("name", RELEVANCE_SETS)
def test_agrees_with_bfcl_on_relevance(oracle, name):
    tally = Tally()
    for entry, _ in sample_items(oracle, name):
        first = entry["function"][0]["name"] if entry["function"] else "some_function"
        outputs = {
            "no_call": [],
            "text": "I cannot help with that.",
            "empty_call": [{}],
            "one_call": [{first: {}}],
            "two_calls": [{first: {}}, {first: {"x": 1}}],
        }
        for kind, calls in outputs.items():
            compare(oracle, tally, entry["function"], calls, None, name, kind, entry["id"])
    print(tally.summary(name))
    assert tally.disagreements == 0, tally.summary(name)


# Values of every JSON-ish shape, plus tuples, which a Python-syntax decoder produces.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, 1.0, 2.0, -1.5]),
    st.sampled_from(["", "a", "New York", "new-york", "A", "x y", "1", "true"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.sampled_from(["a", "b", "name", "age"]), inner, max_size=3),
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_agrees_with_bfcl_on_arbitrary_values(oracle, data):
    name = data.draw(st.sampled_from(["simple_python", "live_simple", "multiple", "parallel"]))
    entry, ground_truth = data.draw(st.sampled_from(sample_items(oracle, name)))
    case = Case(entry, ground_truth, random.Random(0))
    index = data.draw(st.integers(0, len(case.answer) - 1))
    call_name, args = case.answer[index]
    params = sorted(case.docs[call_name]["parameters"]["properties"])
    param = data.draw(st.sampled_from(params)) if params else "x"
    # Half the time an acceptable value (or a near miss of one), half the time anything at all.
    acceptable = [v for v in case.acceptable(index, param) if v != ""]
    near = [concrete_value(v, case.spec(call_name, param)) for v in acceptable]
    args[param] = data.draw(st.sampled_from(near) | VALUES if near else VALUES)
    tally = Tally()
    compare(oracle, tally, entry["function"], as_decoded(case.answer), ground_truth, name, "arbitrary", entry["id"])
    assert tally.disagreements == 0, tally.summary(name)
