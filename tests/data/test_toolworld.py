"""The built-in tool world: deterministic, valid, leveled as documented, varied, splittable, fast."""

import json
import re
import time
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rftfast.data.record import Call, Record, normalize_tool
from rftfast.data.toolworld import LEVELS, TOOLS, TOOLS_BY_NAME, execute, generate, split, user_query, validate
from rftfast.data.toolworld.executor import HANDLERS
from rftfast.data.toolworld.reasoning import relative_day
from rftfast.data.toolworld.tasks import INTENTS
from rftfast.data.toolworld.tools import ToolTable
from rftfast.data.toolworld.vocab import NUMBER_WORDS, WEEKDAYS, twelve_hour

N = 600  # 100 per level


@pytest.fixture(scope="module")
def records():
    return generate(N, seed=0)


def by_level(records, level):
    chosen = [r for r in records if r.meta["level"] == level]
    assert chosen, f"no level-{level} records"
    return chosen


def calls_of(records):
    return [(r, c) for r in records if r.is_call for c in r.answer]


# --- the tools -----------------------------------------------------------------------------------


def test_tools_are_strict_json_schemas():
    jsonschema = pytest.importorskip("jsonschema")
    assert len(TOOLS) >= 12
    for tool in TOOLS:
        assert normalize_tool(tool) == tool, "tools are already in the canonical wrapper"
        fn = tool["function"]
        assert re.fullmatch(r"[a-z][a-z_]*", fn["name"]) and fn["description"]
        params = fn["parameters"]
        jsonschema.Draft202012Validator.check_schema(params)
        assert set(params["required"]) <= set(params["properties"])
        for name, spec in params["properties"].items():
            assert spec.get("type") and spec.get("description"), f"{fn['name']}.{name}"
    assert any(
        set(t["function"]["parameters"]["properties"]) - set(t["function"]["parameters"]["required"]) for t in TOOLS
    ), "some tools have optional parameters"


def test_every_tool_has_one_handler_and_one_intent_in_tools_order():
    assert list(HANDLERS) == list(INTENTS) == list(TOOLS_BY_NAME)


def test_tool_tables_refuse_unknown_twice_registered_and_missing_tools():
    table = ToolTable("handler")

    def f():
        return {}

    with pytest.raises(ValueError, match="there is no tool 'get_wether'"):
        table.register("get_wether")(f)
    table.register("get_weather")(f)
    with pytest.raises(ValueError, match="'get_weather' already has f"):
        table.register("get_weather")(f)
    with pytest.raises(ValueError, match="no handler for convert_units, "):
        table.complete()


# --- determinism -----------------------------------------------------------------------------------


def dump(records):
    return json.dumps([r.to_json() for r in records], sort_keys=True)


def test_same_seed_same_records_and_different_seed_different():
    assert dump(generate(120, seed=7)) == dump(generate(120, seed=7))
    assert dump(generate(120, seed=7)) != dump(generate(120, seed=8))


def test_each_record_depends_only_on_seed_and_index():
    assert dump(generate(30, seed=3)) == dump(generate(90, seed=3)[:30])


def test_ids_and_meta(records):
    assert [r.id for r in records] == [f"toolworld-0-{i}" for i in range(N)]
    for r in records:
        assert r.meta["source"] == "toolworld" and r.meta["level"] in LEVELS and r.meta["kind"]


def test_levels_are_cycled_evenly_and_restricted_on_request():
    counts = {level: 0 for level in LEVELS}
    for r in generate(60, seed=1):
        counts[r.meta["level"]] += 1
    assert set(counts.values()) == {10}
    assert {r.meta["level"] for r in generate(20, seed=1, levels=(2, 5))} == {2, 5}


@pytest.mark.parametrize("kwargs", [dict(levels=()), dict(levels=(7,)), dict(levels=(0, 1)), dict(n=-1)])
def test_generate_rejects_bad_requests(kwargs):
    with pytest.raises(ValueError):
        generate(**{"n": 5, **kwargs})


# --- every record is well formed ---------------------------------------------------------------------


def test_system_prompt_states_the_tasks_today(records):
    for r in records:
        assert r.messages[0]["role"] == "system" and r.messages[-1]["role"] == "user"
        today = date.fromisoformat(r.meta["today"])
        assert today.isoformat() in r.messages[0]["content"]
        assert WEEKDAYS[today.weekday()] in r.messages[0]["content"]


def test_answer_tools_are_offered_once_each(records):
    for r in records:
        assert len(set(r.tool_names)) == len(r.tool_names)
        if r.is_call:
            assert {c.name for c in r.answer} <= set(r.tool_names)


def test_ground_truth_calls_fit_their_schema(records):
    jsonschema = pytest.importorskip("jsonschema")
    checker = jsonschema.FormatChecker()
    for r, call in calls_of(records):
        schema = TOOLS_BY_NAME[call.name]["function"]["parameters"]
        jsonschema.validate(call.arguments, schema, format_checker=checker)
        for name, value in call.arguments.items():  # canonical Python types, not just JSON-compatible ones
            expected = {"string": str, "integer": int, "number": float}[schema["properties"][name]["type"]]
            assert type(value) is expected, (r.id, call.name, name, value)


def test_ground_truth_calls_execute(records):
    for r, call in calls_of(records):
        result = execute(call)
        assert isinstance(result, dict) and result, (r.id, call)
        json.dumps(result)  # results go into tool messages


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_any_seed_gives_valid_executable_records(seed):
    for r in generate(12, seed=seed):
        Record.from_json(json.loads(r.dumps()))
        for call in r.answer if r.is_call else []:
            execute(call)


def test_records_round_trip_through_json(records):
    for r in records:
        again = Record.from_json(json.loads(r.dumps()))
        assert again.to_json() == r.to_json()
        assert again.answer == r.answer


# --- the levels' defining properties -------------------------------------------------------------------


def required_of(name):
    return set(TOOLS_BY_NAME[name]["function"]["parameters"]["required"])


def test_level_1_one_call_required_arguments_only(records):
    for r in by_level(records, 1):
        assert len(r.answer) == 1 and r.tool_names == [r.answer[0].name]
        assert set(r.answer[0].arguments) == required_of(r.answer[0].name)


def test_level_2_uses_an_optional_argument(records):
    for r in by_level(records, 2):
        assert len(r.answer) == 1
        assert set(r.answer[0].arguments) - required_of(r.answer[0].name), r.answer


def test_level_3_offers_distractors(records):
    for r in by_level(records, 3):
        assert len(r.answer) == 1 and len(r.tool_names) >= 3


def test_level_4_parallel_calls(records):
    for r in by_level(records, 4):
        assert 2 <= len(r.answer) <= 3
        assert len({json.dumps(c.to_json(), sort_keys=True) for c in r.answer}) == len(r.answer), "no repeated call"


def spoken_forms(value):
    if isinstance(value, float) and value == int(value):
        return {str(value), str(int(value))}
    return {str(value)}


def test_level_5_values_are_computed_not_copied(records):
    """At least one argument of each answer does not appear in the final user message."""
    for r in by_level(records, 5):
        query = user_query(r)
        copied = [
            all(form in query for form in spoken_forms(value)) for call in r.answer for value in call.arguments.values()
        ]
        assert not all(copied), (query, r.answer)


def test_level_5_context_turns_carry_the_value(records):
    with_context = [r for r in by_level(records, 5) if len(r.messages) > 2]
    assert with_context, "some level-5 tasks pick a value from earlier turns"
    for r in with_context:
        earlier = json.dumps(r.messages[1:-1])
        assert any(
            any(form in earlier for form in spoken_forms(value)) for c in r.answer for value in c.arguments.values()
        ), r.messages


def test_level_6_answers_in_text(records):
    for r in by_level(records, 6):
        assert isinstance(r.answer, str) and r.answer and len(r.answer) < 200
        assert r.answer_message()["role"] == "assistant" and "tool_calls" not in r.answer_message()
        assert r.tool_names, "tools are still offered, so the model must decline to use them"
        if r.meta["kind"] == "unsupported":
            assert "web_search" not in r.tool_names


def test_unsupported_requests_never_offer_the_serving_tool():
    for r in generate(600, seed=5, levels=(6,)):
        query = user_query(r)
        if "weather" in query or "raining" in query:
            assert "get_weather" not in r.tool_names
        if query.startswith(("Translate", "How do you say")):
            assert "translate_text" not in r.tool_names


# --- the reasoning helpers are right -----------------------------------------------------------------


def days_named(phrase, today):
    """An independent reading of relative_day's phrases."""
    fixed = {
        "today": 0,
        "tomorrow": 1,
        "the day after tomorrow": 2,
        "in a week": 7,
        "a week from today": 7,
        "in two weeks": 14,
        "two weeks from today": 14,
    }
    if phrase in fixed:
        return fixed[phrase]
    if m := re.fullmatch(r"in (\w+) days", phrase):
        word = m.group(1)
        return int(word) if word.isdigit() else NUMBER_WORDS.index(word)
    m = re.fullmatch(r"this coming (\w+)", phrase)
    return (WEEKDAYS.index(m.group(1)) - today.weekday() - 1) % 7 + 1


def test_relative_days_count_from_today():
    import random

    rng = random.Random(0)
    for _ in range(500):
        today = date(2024, 1, 1) + timedelta(days=rng.randrange(1000))
        phrase, day = relative_day(rng, today)
        assert day == today + timedelta(days=days_named(phrase, today)), (today, phrase, day)


@pytest.mark.parametrize(
    "time,spoken",
    [("00:00", "12 am"), ("09:00", "9 am"), ("12:30", "12:30 pm"), ("19:45", "7:45 pm"), ("23:15", "11:15 pm")],
)
def test_twelve_hour(time, spoken):
    assert twelve_hour(time) == spoken


# --- the executor ---------------------------------------------------------------------------------------


def test_executor_results_are_deterministic_and_plausible():
    assert execute(Call("get_weather", {"city": "Oslo"})) == execute(Call("get_weather", {"city": "Oslo"}))
    assert execute(Call("get_weather", {"city": "Oslo"}))["unit"] == "celsius", "defaults are applied"
    assert execute(Call("convert_units", {"value": 1.0, "from_unit": "miles", "to_unit": "kilometers"}))[
        "result"
    ] == pytest.approx(1.609344, rel=1e-5)
    assert execute(Call("convert_units", {"value": 100.0, "from_unit": "celsius", "to_unit": "fahrenheit"}))[
        "result"
    ] == pytest.approx(212.0)
    assert (
        execute(Call("convert_currency", {"amount": 10.0, "from_currency": "EUR", "to_currency": "EUR"}))[
            "converted_amount"
        ]
        == 10.0
    )
    assert execute(Call("calculate", {"expression": "(3 + 4) * 2"}))["result"] == 14
    assert len(execute(Call("web_search", {"query": "numba", "max_results": 3}))["results"]) == 3
    assert execute({"name": "get_stock_price", "arguments": {"symbol": "AAPL"}})["symbol"] == "AAPL"


@pytest.mark.parametrize(
    "call,match",
    [
        (Call("order_pizza", {}), "unknown tool 'order_pizza'"),
        (Call("get_weather", {}), "missing required argument 'city'"),
        (Call("get_weather", {"city": "Rome", "country": "IT"}), "unexpected argument 'country'"),
        (Call("get_weather", {"city": 42}), "argument 'city' must be a string"),
        (Call("get_weather", {"city": ""}), "must not be empty"),
        (Call("get_weather", {"city": "Rome", "unit": "kelvin"}), "must be one of"),
        (
            Call("book_restaurant", {"name": "X", "date": "2025-01-01", "time": "19:00", "party_size": "4"}),
            "'party_size' must be an integer",
        ),
        (
            Call("book_restaurant", {"name": "X", "date": "2025-01-01", "time": "19:00", "party_size": 4.0}),
            "'party_size' must be an integer",
        ),
        (
            Call("book_restaurant", {"name": "X", "date": "2025-01-01", "time": "19:00", "party_size": True}),
            "'party_size' must be an integer",
        ),
        (Call("book_restaurant", {"name": "X", "date": "2025-01-01", "time": "19:00", "party_size": 0}), ">= 1"),
        (
            Call("book_restaurant", {"name": "X", "date": "2025-01-01", "time": "7pm", "party_size": 2}),
            "'time' does not match",
        ),
        (Call("list_events", {"date": "03/14/2025"}), "'date' does not match"),
        (Call("list_events", {"date": "2025-02-30"}), "not a real calendar date"),
        (Call("send_email", {"to": "bob", "subject": "Hi"}), "'to' does not match"),
        (Call("convert_currency", {"amount": 5.0, "from_currency": "usd", "to_currency": "EUR"}), "must be one of"),
        (Call("convert_currency", {"amount": float("nan"), "from_currency": "USD", "to_currency": "EUR"}), "finite"),
        (
            Call("convert_units", {"value": 1.0, "from_unit": "kilograms", "to_unit": "miles"}),
            "cannot convert kilograms",
        ),
        (Call("calculate", {"expression": "2 +"}), "not an arithmetic expression"),
        (Call("calculate", {"expression": "__import__('os')"}), "unsupported element"),
        (Call("calculate", {"expression": "1 / 0"}), "division by zero"),
        (Call("calculate", {"expression": "9 ** 9 ** 9"}), "too large"),
    ],
)
def test_executor_rejects_bad_calls(call, match):
    with pytest.raises(ValueError, match=match):
        execute(call)


def test_validate_fills_defaults():
    assert validate(Call("find_flights", {"origin": "A", "destination": "B", "date": "2025-05-01"})) == {
        "origin": "A",
        "destination": "B",
        "date": "2025-05-01",
        "cabin_class": "economy",
        "passengers": 1,
    }


# --- split, variety, speed ---------------------------------------------------------------------------------


def test_split_shares_no_query_and_keeps_everything(records):
    train, heldout = split(records, heldout_fraction=0.2, seed=0)
    assert len(train) + len(heldout) == len(records)
    assert {r.id for r in train}.isdisjoint({r.id for r in heldout})
    assert {user_query(r) for r in train}.isdisjoint({user_query(r) for r in heldout})
    assert abs(len(heldout) - 0.2 * len(records)) <= 0.02 * len(records)
    assert {r.meta["level"] for r in heldout} == set(LEVELS)
    assert split(records, 0.2, seed=0) == (train, heldout)
    assert split(records, 0.2, seed=1) != (train, heldout)


def test_split_keeps_duplicate_queries_together():
    records = generate(300, seed=2, levels=(6,))  # chit-chat repeats itself
    queries = [user_query(r) for r in records]
    assert len(set(queries)) < len(queries)
    train, heldout = split(records, heldout_fraction=0.3, seed=4)
    assert {user_query(r) for r in train}.isdisjoint({user_query(r) for r in heldout})


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_split_rejects_bad_fraction(records, fraction):
    with pytest.raises(ValueError, match="heldout_fraction"):
        split(records, fraction)


def test_variety():
    records = generate(1000, seed=0)
    assert len({user_query(r) for r in records}) >= 850
    answered = {c.name for r in records if r.is_call for c in r.answer}
    assert answered == set(TOOLS_BY_NAME), "every tool is the right answer somewhere"
    assert len({r.meta["today"] for r in records}) >= 500


def test_thousand_tasks_in_well_under_a_second():
    generate(50, seed=9)  # warm up
    start = time.perf_counter()
    generate(1000, seed=9)
    assert time.perf_counter() - start < 1.0
