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
from rftfast.data.toolworld import vocab as v
from rftfast.data.toolworld.tools import CABIN_CLASSES, CURRENCIES, LANGUAGES, TEMPERATURE_UNITS, TRAVEL_MODES


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


def single(query: str, tool: str, /, **arguments: Any) -> Task:
    # Positional-only: book_restaurant has an argument called 'name'.
    return Task(query, [Call(tool, arguments)], tool)


def pick(rng: random.Random, templates: tuple[str, ...], **slots: object) -> str:
    return rng.choice(templates).format(**slots)


def unit_word(unit: str, value: float | None = None) -> str:
    """How a unit reads in a sentence: temperatures take 'degrees', a quantity of one is singular."""
    if unit in TEMPERATURE_UNITS:
        return f"degrees {unit.capitalize()}"
    if value == 1:
        return {"feet": "foot", "inches": "inch"}.get(unit, unit[:-1])
    return unit


# --- the intents ---------------------------------------------------------------------------------


def weather(rng: random.Random, today: date, optional: bool) -> Task:
    city = rng.choice(v.CITIES)
    if not optional:
        return single(
            pick(
                rng,
                (
                    "What's the weather in {city}?",
                    "How's the weather in {city} right now?",
                    "Tell me the current weather for {city}.",
                    "Check the weather in {city} for me.",
                    "What's it like outside in {city} at the moment?",
                    "Is it cold in {city} today?",
                    "Can you look up the weather in {city}?",
                ),
                city=city,
            ),
            "get_weather",
            city=city,
        )
    unit = rng.choice(TEMPERATURE_UNITS)
    return single(
        pick(
            rng,
            (
                "What's the weather in {city} in {unit}?",
                "How warm is it in {city}? Give me the temperature in {unit}.",
                "Check the weather in {city} and show the temperature in degrees {Unit}.",
                "I'd like the current weather for {city}, in {unit} please.",
                "What's the temperature in {city} right now, in {Unit}?",
            ),
            city=city,
            unit=unit,
            Unit=unit.capitalize(),
        ),
        "get_weather",
        city=city,
        unit=unit,
    )


def convert_units(rng: random.Random, today: date, optional: bool) -> Task:
    units = rng.choice((v.LENGTH_UNITS, v.MASS_UNITS, v.VOLUME_UNITS, TEMPERATURE_UNITS))
    from_unit, to_unit = rng.sample(units, 2)
    value = float(rng.randrange(-20, 101)) if units is TEMPERATURE_UNITS else v.random_quantity(rng)
    query = pick(
        rng,
        (
            "Convert {v} {f} to {t}.",
            "How many {t} is {v} {f}?",
            "What is {v} {f} in {t}?",
            "I need {v} {f} expressed in {t}.",
            "Change {v} {f} into {t}, please.",
            "Please turn {v} {f} into {t}.",
        ),
        v=v.format_number(value),
        f=unit_word(from_unit, value),
        t=unit_word(to_unit),
    )
    return single(query, "convert_units", value=value, from_unit=from_unit, to_unit=to_unit)


EVENT_PHRASINGS = (
    "Create an event called '{title}' on {date}{extras}.",
    "Add '{title}' to my calendar on {date}{extras}.",
    "Put {title} in my calendar for {date}{extras}.",
    "Schedule '{title}' for {date}{extras}.",
    "Make a calendar entry '{title}' on {date}{extras}.",
)


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
    query = pick(rng, EVENT_PHRASINGS, title=title, date=v.spoken_date(rng, day), extras=extras)
    return single(query, "create_event", **arguments)


def list_events(rng: random.Random, today: date, optional: bool) -> Task:
    day = v.future_date(rng, today)
    return single(
        pick(
            rng,
            (
                "What's on my calendar on {date}?",
                "List my events for {date}.",
                "Do I have anything scheduled on {date}?",
                "Show me my schedule for {date}.",
                "What meetings do I have on {date}?",
                "Am I busy on {date}?",
            ),
            date=v.spoken_date(rng, day),
        ),
        "list_events",
        date=day.isoformat(),
    )


def currency_word(rng: random.Random, code: str) -> str:
    return code if rng.random() < 0.5 else v.CURRENCY_NAMES[code]


def convert_currency(rng: random.Random, today: date, optional: bool) -> Task:
    from_currency, to_currency = rng.sample(CURRENCIES, 2)
    amount = v.random_amount(rng)
    query = pick(
        rng,
        (
            "Convert {a} {f} to {t}.",
            "How much is {a} {f} in {t}?",
            "What's {a} {f} worth in {t}?",
            "Exchange {a} {f} into {t}.",
            "I have {a} {f}. How much is that in {t}?",
        ),
        a=v.format_number(amount),
        f=currency_word(rng, from_currency),
        t=currency_word(rng, to_currency),
    )
    return single(query, "convert_currency", amount=amount, from_currency=from_currency, to_currency=to_currency)


def web_search(rng: random.Random, today: date, optional: bool) -> Task:
    topic = rng.choice(v.SEARCH_TOPICS)
    if not optional:
        return single(
            pick(
                rng,
                (
                    "Search the web for {q}.",
                    "Look up {q} online.",
                    "Find information about {q}.",
                    "Can you search for {q}?",
                    "Do a web search on {q}.",
                    "Google {q} for me.",
                ),
                q=topic,
            ),
            "web_search",
            query=topic,
        )
    n = rng.randrange(2, 11)
    return single(
        pick(
            rng,
            (
                "Search the web for {q} and show me the top {n} results.",
                "Find {n} results about {q}.",
                "Look up {q} online, just {n} results please.",
                "Give me the top {n} search results for {q}.",
            ),
            q=topic,
            n=n,
        ),
        "web_search",
        query=topic,
        max_results=n,
    )


def send_email(rng: random.Random, today: date, optional: bool) -> Task:
    to, subject = v.email_of(rng, rng.choice(v.PEOPLE)), rng.choice(v.EMAIL_SUBJECTS)
    if not optional:
        return single(
            pick(
                rng,
                (
                    "Send an email to {to} with the subject '{s}'.",
                    "Email {to} with the subject line '{s}'.",
                    "Write to {to}, subject: '{s}'.",
                    "Shoot an email over to {to} titled '{s}'.",
                ),
                to=to,
                s=subject,
            ),
            "send_email",
            to=to,
            subject=subject,
        )
    body = rng.choice(v.EMAIL_BODIES)
    return single(
        pick(
            rng,
            (
                "Send an email to {to} with the subject '{s}' and the message '{b}'",
                "Email {to}, subject '{s}', saying: '{b}'",
                "Write to {to} with the subject '{s}'. The body should read: '{b}'",
            ),
            to=to,
            s=subject,
            b=body,
        ),
        "send_email",
        to=to,
        subject=subject,
        body=body,
    )


REMINDER_PHRASINGS = (
    "Remind me to {x} on {date} at {time}.",
    "Set a reminder to {x} for {date} at {time}.",
    "On {date} at {time}, remind me to {x}.",
    "Create a reminder for {date} at {time}: {x}.",
)


def set_reminder(rng: random.Random, today: date, optional: bool) -> Task:
    text, day, time = rng.choice(v.REMINDER_TEXTS), v.future_date(rng, today), v.random_time(rng)
    query = pick(rng, REMINDER_PHRASINGS, x=text, date=v.spoken_date(rng, day), time=time)
    return single(query, "set_reminder", text=text, date=day.isoformat(), time=time)


def stock_price(rng: random.Random, today: date, optional: bool) -> Task:
    symbol = rng.choice(tuple(v.COMPANIES))
    company = v.COMPANIES[symbol]
    phrasings = (
        "How much is {s} trading at?",
        "Get me the current price of {s}.",
        "Check the share price of {s}.",
        "What's {s} at on the stock market today?",
    )
    if company != symbol:  # 'IBM (IBM)' reads badly
        phrasings += ("What's the stock price of {c} ({s})?", "What are {c} shares ({s}) worth right now?")
    return single(pick(rng, phrasings, s=symbol, c=company), "get_stock_price", symbol=symbol)


FOREIGN_LANGUAGES = tuple(language for language in LANGUAGES if language != "English")


def translate(rng: random.Random, today: date, optional: bool) -> Task:
    phrase, target = rng.choice(v.PHRASES), rng.choice(FOREIGN_LANGUAGES)
    if not optional:
        return single(
            pick(
                rng,
                (
                    "Translate '{x}' into {t}.",
                    "How do you say '{x}' in {t}?",
                    "Can you translate '{x}' to {t}?",
                    "What's '{x}' in {t}?",
                ),
                x=phrase,
                t=target,
            ),
            "translate_text",
            text=phrase,
            target_language=target,
        )
    return single(
        pick(
            rng,
            (
                "Translate '{x}' from English into {t}.",
                "Translate this English sentence into {t}: '{x}'",
                "How would I say the English phrase '{x}' in {t}?",
            ),
            x=phrase,
            t=target,
        ),
        "translate_text",
        text=phrase,
        target_language=target,
        source_language="English",
    )


def calculate(rng: random.Random, today: date, optional: bool) -> Task:
    expression = rng.choice(v.EXPRESSIONS)
    return single(
        pick(
            rng,
            ("Calculate {e}.", "What is {e}?", "Compute {e} for me.", "Work out {e}.", "Can you evaluate {e}?"),
            e=expression,
        ),
        "calculate",
        expression=expression,
    )


def book_restaurant(rng: random.Random, today: date, optional: bool) -> Task:
    name, day, time, n = rng.choice(v.RESTAURANTS), v.future_date(rng, today), v.random_time(rng), rng.randrange(2, 11)
    query = pick(
        rng,
        (
            "Book a table for {n} at {r} on {date} at {time}.",
            "Reserve {r} for {n} people on {date} at {time}.",
            "I need a table at {r} for {n} on {date}, {time}.",
            "Make a reservation at {r}: party of {n}, {date}, {time}.",
        ),
        n=n,
        r=name,
        date=v.spoken_date(rng, day),
        time=time,
    )
    return single(query, "book_restaurant", name=name, date=day.isoformat(), time=time, party_size=n)


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
    query = pick(
        rng,
        (
            "Find flights from {o} to {d} on {date}{x}.",
            "Search for flights from {o} to {d} on {date}{x}.",
            "Are there any flights from {o} to {d} on {date}{x}?",
            "Look up flights {o} to {d} for {date}{x}.",
        ),
        o=origin,
        d=destination,
        date=v.spoken_date(rng, day),
        x=extras,
    )
    return single(query, "find_flights", **arguments)


MODE_WORDS = {
    "driving": ("by car", "driving"),
    "walking": ("on foot", "walking"),
    "transit": ("by public transport", "transit"),
    "cycling": ("by bike", "cycling"),
}


def directions(rng: random.Random, today: date, optional: bool) -> Task:
    origin, destination = rng.sample(v.PLACES, 2)
    if not optional:
        return single(
            pick(
                rng,
                (
                    "How do I get from {o} to {d}?",
                    "Give me directions from {o} to {d}.",
                    "What's the route from {o} to {d}?",
                    "Show me how to get to {d} from {o}.",
                ),
                o=origin,
                d=destination,
            ),
            "get_directions",
            origin=origin,
            destination=destination,
        )
    mode = rng.choice(TRAVEL_MODES)
    by, adjective = MODE_WORDS[mode]
    return single(
        pick(
            rng,
            (
                "How do I get from {o} to {d} {by}?",
                "Give me {adj} directions from {o} to {d}.",
                "What's the best way from {o} to {d} {by}?",
            ),
            o=origin,
            d=destination,
            by=by,
            adj=adjective,
        ),
        "get_directions",
        origin=origin,
        destination=destination,
        mode=mode,
    )


INTENTS: dict[str, Intent] = {
    "get_weather": weather,
    "convert_units": convert_units,
    "create_event": create_event,
    "list_events": list_events,
    "convert_currency": convert_currency,
    "web_search": web_search,
    "send_email": send_email,
    "set_reminder": set_reminder,
    "get_stock_price": stock_price,
    "translate_text": translate,
    "calculate": calculate,
    "book_restaurant": book_restaurant,
    "find_flights": flights,
    "get_directions": directions,
}
# Intents whose tool has optional parameters, so a level-2 query can ask for one.
OPTIONAL_INTENTS = (
    "get_weather",
    "create_event",
    "web_search",
    "send_email",
    "translate_text",
    "find_flights",
    "get_directions",
)


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
    kind = rng.randrange(5)
    if kind == 0:
        cities = rng.sample(v.CITIES, n)
        query = pick(
            rng,
            ("What's the weather in {x}?", "Compare the weather in {x}.", "How's the weather right now in {x}?"),
            x=and_list(cities),
        )
        calls = [Call("get_weather", {"city": city}) for city in cities]
    elif kind == 1:
        symbols = rng.sample(tuple(v.COMPANIES), n)
        query = pick(
            rng,
            ("Get the stock prices of {x}.", "How are {x} trading today?", "Check the share prices for {x}."),
            x=and_list(symbols),
        )
        calls = [Call("get_stock_price", {"symbol": symbol}) for symbol in symbols]
    elif kind == 2:
        source, *targets = rng.sample(CURRENCIES, n + 1)
        amount = v.random_amount(rng)
        query = pick(
            rng,
            ("Convert {a} {f} to {x}.", "How much is {a} {f} in {x}?"),
            a=v.format_number(amount),
            f=source,
            x=and_list(targets),
        )
        calls = [
            Call("convert_currency", {"amount": amount, "from_currency": source, "to_currency": target})
            for target in targets
        ]
    elif kind == 3:
        phrase, languages = rng.choice(v.PHRASES), rng.sample(FOREIGN_LANGUAGES, n)
        query = pick(
            rng, ("Translate '{p}' into {x}.", "How do you say '{p}' in {x}?"), p=phrase, x=and_list(languages)
        )
        calls = [Call("translate_text", {"text": phrase, "target_language": language}) for language in languages]
    else:
        days = sorted({v.future_date(rng, today) for _ in range(n)})
        query = pick(
            rng,
            ("What's on my calendar on {x}?", "List my events for {x}.", "Am I free on {x}?"),
            x=and_list([v.spoken_date(rng, day) for day in days]),
        )
        calls = [Call("list_events", {"date": day.isoformat()}) for day in days]
        if len(calls) < 2:  # two draws landed on the same day; fall back to a mixed pair
            return parallel_mixed(rng, today)
    return Task(query, calls, f"parallel:{calls[0].name}x{len(calls)}")


def parallel(rng: random.Random, today: date) -> Task:
    return parallel_mixed(rng, today) if rng.random() < 0.6 else parallel_same_tool(rng, today)
