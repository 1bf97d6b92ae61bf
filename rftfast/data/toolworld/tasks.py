"""Single-call intents (one per tool) and their parallel combinations: levels 1-4.

An intent draws entities, picks one of several phrasings, and returns the user's query with
the ground-truth call. With `optional=True` the query also asks for at least one optional
parameter (level 2). Parallel tasks (level 4) join two or three independent intents into one
message, or ask one tool about several entities at once.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from rftfast.data.record import Call
from rftfast.data.toolworld import phrasings as p
from rftfast.data.toolworld import vocab as v
from rftfast.data.toolworld.tools import (
    CABIN_CLASSES,
    CURRENCIES,
    LANGUAGES,
    TEMPERATURE_UNITS,
    TRAVEL_MODES,
    ToolTable,
    optional_parameters,
)


@dataclass
class Task:
    """What a record is built from: the user's words, the right answer, and what to offer."""

    query: str
    answer: list[Call] | str
    kind: str  # the intent or reasoning pattern, kept in meta for analysis
    context: list[dict] = field(default_factory=list)  # earlier turns (level 5)
    required_tools: tuple[str, ...] = ()  # offered besides the answer's tools, e.g. one called in the context
    near_misses: tuple[str, ...] = ()  # tempting wrong tools, offered first as distractors
    forbidden_tools: tuple[str, ...] = ()  # tools that would serve a no-call request, so never offered


Intent = Callable[[random.Random, date, bool], Task]


def ask(
    rng: random.Random, phrasings: tuple[str, ...], tool: str, /, *, spoken: dict | None = None, **arguments: Any
) -> Task:
    """One call to `tool`, asked in one of `phrasings`.

    A phrasing's slots are named after the call's arguments and show them as they are, except
    where `spoken` says how a value reads in the sentence (a spoken date, a unit word); `spoken`
    also fills the slots that are no argument at all.
    """
    # Positional-only, so that no argument name (book_restaurant has 'name') can clash with these.
    query = pick(rng, phrasings, **(arguments | (spoken or {})))
    return Task(query, [Call(tool, arguments)], tool)


def pick(rng: random.Random, templates: tuple[str, ...], **slots: object) -> str:
    # A single template draws nothing, so a table may hold something said only one way.
    template = templates[0] if len(templates) == 1 else rng.choice(templates)
    return template.format(**slots)


def unit_word(unit: str, value: float | None = None) -> str:
    """How a unit reads in a sentence: temperatures take 'degrees', a quantity of one is singular."""
    if unit in TEMPERATURE_UNITS:
        return f"degrees {unit.capitalize()}"
    if value == 1:
        return {"feet": "foot", "inches": "inch"}.get(unit, unit[:-1])
    return unit


# --- the intents ---------------------------------------------------------------------------------

# An intent per tool, each registered under the tool's name; TOOLS says which tools there are.
INTENTS: ToolTable[Intent] = ToolTable("intent")
intent = INTENTS.register


@intent("get_weather")
def weather(rng: random.Random, today: date, optional: bool) -> Task:
    city = rng.choice(v.CITIES)
    if not optional:
        return ask(rng, p.WEATHER, "get_weather", city=city)
    unit = rng.choice(TEMPERATURE_UNITS)
    return ask(rng, p.WEATHER_IN_UNIT, "get_weather", spoken={"Unit": unit.capitalize()}, city=city, unit=unit)


@intent("convert_units")
def convert_units(rng: random.Random, today: date, optional: bool) -> Task:
    units = rng.choice((v.LENGTH_UNITS, v.MASS_UNITS, v.VOLUME_UNITS, TEMPERATURE_UNITS))
    from_unit, to_unit = rng.sample(units, 2)
    value = float(rng.randrange(-20, 101)) if units is TEMPERATURE_UNITS else v.random_quantity(rng)
    spoken = {"value": v.format_number(value), "from_unit": unit_word(from_unit, value), "to_unit": unit_word(to_unit)}
    arguments = {"value": value, "from_unit": from_unit, "to_unit": to_unit}
    return ask(rng, p.UNIT_CONVERSION, "convert_units", spoken=spoken, **arguments)


@intent("create_event")
def create_event(rng: random.Random, today: date, optional: bool) -> Task:
    title, day = rng.choice(v.EVENT_TITLES), v.future_date(rng, today)
    arguments: dict = {"title": title, "date": day.isoformat()}
    extras = ""
    if optional:
        which = rng.choice(("time", "duration", "both"))
        time, minutes = v.random_time(rng), rng.choice((15, 30, 45, 60, 90, 120))
        if which == "time":
            arguments["time"], extras = time, f" at {time}"
        elif which == "duration":
            arguments["duration_minutes"], extras = (
                minutes,
                rng.choice((f" for {minutes} minutes", f", lasting {minutes} minutes")),
            )
        else:
            arguments |= {"time": time, "duration_minutes": minutes}
            extras = rng.choice((f" at {time} for {minutes} minutes", f" from {time}, {minutes} minutes long"))
    spoken = {"date": v.spoken_date(rng, day), "extras": extras}
    return ask(rng, p.EVENT, "create_event", spoken=spoken, **arguments)


@intent("list_events")
def list_events(rng: random.Random, today: date, optional: bool) -> Task:
    day = v.future_date(rng, today)
    return ask(rng, p.LIST_EVENTS, "list_events", spoken={"date": v.spoken_date(rng, day)}, date=day.isoformat())


def currency_word(rng: random.Random, code: str) -> str:
    return code if rng.random() < 0.5 else v.CURRENCY_NAMES[code]


@intent("convert_currency")
def convert_currency(rng: random.Random, today: date, optional: bool) -> Task:
    from_currency, to_currency = rng.sample(CURRENCIES, 2)
    amount = v.random_amount(rng)
    spoken = {
        "amount": v.format_number(amount),
        "from_currency": currency_word(rng, from_currency),
        "to_currency": currency_word(rng, to_currency),
    }
    arguments = {"amount": amount, "from_currency": from_currency, "to_currency": to_currency}
    return ask(rng, p.CURRENCY, "convert_currency", spoken=spoken, **arguments)


@intent("web_search")
def web_search(rng: random.Random, today: date, optional: bool) -> Task:
    topic = rng.choice(v.SEARCH_TOPICS)
    if not optional:
        return ask(rng, p.SEARCH, "web_search", query=topic)
    return ask(rng, p.SEARCH_TOP_N, "web_search", query=topic, max_results=rng.randrange(2, 11))


@intent("send_email")
def send_email(rng: random.Random, today: date, optional: bool) -> Task:
    to, subject = v.email_of(rng, rng.choice(v.PEOPLE)), rng.choice(v.EMAIL_SUBJECTS)
    if not optional:
        return ask(rng, p.EMAIL, "send_email", to=to, subject=subject)
    body = rng.choice(v.EMAIL_BODIES)
    return ask(rng, p.EMAIL_WITH_BODY, "send_email", to=to, subject=subject, body=body)


@intent("set_reminder")
def set_reminder(rng: random.Random, today: date, optional: bool) -> Task:
    text, day, time = rng.choice(v.REMINDER_TEXTS), v.future_date(rng, today), v.random_time(rng)
    spoken = {"date": v.spoken_date(rng, day)}
    return ask(rng, p.REMINDER, "set_reminder", spoken=spoken, text=text, date=day.isoformat(), time=time)


@intent("get_stock_price")
def stock_price(rng: random.Random, today: date, optional: bool) -> Task:
    symbol = rng.choice(tuple(v.COMPANIES))
    company = v.COMPANIES[symbol]
    phrasings = p.STOCK
    if company != symbol:  # 'IBM (IBM)' reads badly
        phrasings += p.STOCK_BY_COMPANY
    return ask(rng, phrasings, "get_stock_price", spoken={"company": company}, symbol=symbol)


FOREIGN_LANGUAGES = tuple(language for language in LANGUAGES if language != "English")


@intent("translate_text")
def translate(rng: random.Random, today: date, optional: bool) -> Task:
    phrase, target = rng.choice(v.PHRASES), rng.choice(FOREIGN_LANGUAGES)
    if not optional:
        return ask(rng, p.TRANSLATE, "translate_text", text=phrase, target_language=target)
    arguments = {"text": phrase, "target_language": target, "source_language": "English"}
    return ask(rng, p.TRANSLATE_FROM_ENGLISH, "translate_text", **arguments)


@intent("calculate")
def calculate(rng: random.Random, today: date, optional: bool) -> Task:
    return ask(rng, p.CALCULATE, "calculate", expression=rng.choice(v.EXPRESSIONS))


@intent("book_restaurant")
def book_restaurant(rng: random.Random, today: date, optional: bool) -> Task:
    name, day, time, n = rng.choice(v.RESTAURANTS), v.future_date(rng, today), v.random_time(rng), rng.randrange(2, 11)
    arguments = {"name": name, "date": day.isoformat(), "time": time, "party_size": n}
    return ask(rng, p.RESTAURANT, "book_restaurant", spoken={"date": v.spoken_date(rng, day)}, **arguments)


@intent("find_flights")
def flights(rng: random.Random, today: date, optional: bool) -> Task:
    origin, destination = rng.sample(v.CITIES, 2)
    day = v.future_date(rng, today)
    arguments: dict = {"origin": origin, "destination": destination, "date": day.isoformat()}
    extras = ""
    if optional:
        which = rng.choice(("cabin", "passengers", "both"))
        cabin, passengers = rng.choice(CABIN_CLASSES[1:]), rng.randrange(2, 7)
        if which in ("cabin", "both"):
            arguments["cabin_class"] = cabin
            extras += f" in {cabin.replace('_', ' ')} class"
        if which in ("passengers", "both"):
            arguments["passengers"] = passengers
            extras += f" for {passengers} passengers"
    spoken = {"date": v.spoken_date(rng, day), "extras": extras}
    return ask(rng, p.FLIGHT, "find_flights", spoken=spoken, **arguments)


@intent("get_directions")
def directions(rng: random.Random, today: date, optional: bool) -> Task:
    origin, destination = rng.sample(v.PLACES, 2)
    if not optional:
        return ask(rng, p.DIRECTIONS, "get_directions", origin=origin, destination=destination)
    mode = rng.choice(TRAVEL_MODES)
    by, adjective = p.MODE_WORDS[mode]
    arguments = {"origin": origin, "destination": destination, "mode": mode}
    return ask(rng, p.DIRECTIONS_BY_MODE, "get_directions", spoken={"by": by, "adjective": adjective}, **arguments)


INTENTS.complete()
# Intents whose tool has optional parameters, so a level-2 query can ask for one.
OPTIONAL_INTENTS = tuple(name for name in INTENTS if optional_parameters(name))


def one_call(rng: random.Random, today: date, optional: bool = False) -> Task:
    names = OPTIONAL_INTENTS if optional else tuple(INTENTS)
    return INTENTS[rng.choice(names)](rng, today, optional)


# --- level 4: parallel calls ---------------------------------------------------------------------


def lower_first(sentence: str) -> str:
    """Lower-case a sentence's first letter to continue a longer message, but never 'I' or an acronym."""
    first = sentence.split(" ", 1)[0]
    if first == "I" or first.startswith("I'") or first.isupper():
        return sentence
    return sentence[0].lower() + sentence[1:]


def join_requests(rng: random.Random, sentences: list[str]) -> str:
    a, b, *rest = sentences
    la, lb = lower_first(a), lower_first(b)
    if not rest:
        return rng.choice((f"{a} {b}", f"{a} Also, {lb}", f"Two things: {la} And {lb}", f"{a} Then {lb}"))
    lc = lower_first(rest[0])
    return rng.choice(
        (
            f"{a} {b} {rest[0]}",
            f"{a} Also, {lb} And finally, {lc}",
            f"I need three things. First, {la} Second, {lb} Third, {lc}",
        )
    )


def parallel_mixed(rng: random.Random, today: date) -> Task:
    """Two or three different intents in one message."""
    names = rng.sample(tuple(INTENTS), rng.choice((2, 2, 3)))
    parts = [INTENTS[name](rng, today, name in OPTIONAL_INTENTS and rng.random() < 0.25) for name in names]
    calls = [call for part in parts for call in part.answer]
    return Task(join_requests(rng, [part.query for part in parts]), calls, "parallel:" + "+".join(names))


def and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def parallel_same_tool(rng: random.Random, today: date) -> Task:
    """One tool, several entities: 'the weather in Paris and Tokyo' is two get_weather calls."""
    n = rng.choice((2, 2, 3))
    tool = rng.choice(tuple(p.SAME_TOOL))
    slots: dict = {}  # the query's other slots, besides {listed}
    if tool == "get_weather":
        listed = rng.sample(v.CITIES, n)
        calls = [Call(tool, {"city": city}) for city in listed]
    elif tool == "get_stock_price":
        listed = rng.sample(tuple(v.COMPANIES), n)
        calls = [Call(tool, {"symbol": symbol}) for symbol in listed]
    elif tool == "convert_currency":
        source, *listed = rng.sample(CURRENCIES, n + 1)
        amount = v.random_amount(rng)
        slots = {"amount": v.format_number(amount), "from_currency": source}
        calls = [Call(tool, {"amount": amount, "from_currency": source, "to_currency": target}) for target in listed]
    elif tool == "translate_text":
        phrase, listed = rng.choice(v.PHRASES), rng.sample(FOREIGN_LANGUAGES, n)
        slots = {"text": phrase}
        calls = [Call(tool, {"text": phrase, "target_language": language}) for language in listed]
    else:
        days = sorted({v.future_date(rng, today) for _ in range(n)})
        listed = [v.spoken_date(rng, day) for day in days]
        calls = [Call(tool, {"date": day.isoformat()}) for day in days]
    query = pick(rng, p.SAME_TOOL[tool], listed=and_list(listed), **slots)
    if len(calls) < 2:  # two draws landed on the same day; fall back to a mixed pair
        return parallel_mixed(rng, today)
    return Task(query, calls, f"parallel:{tool}x{len(calls)}")


def parallel(rng: random.Random, today: date) -> Task:
    return parallel_mixed(rng, today) if rng.random() < 0.6 else parallel_same_tool(rng, today)
