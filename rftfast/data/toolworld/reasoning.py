"""Level 5: tasks whose argument values must be worked out, not copied from the query.

Each builder guarantees at least one computed value: a date relative to the 'today' in the
system prompt ("in three days"), a spoken time or duration turned canonical ("7:30 pm" ->
"19:30", "an hour and a half" -> 90), a count ("me and three friends" -> 4), a product
("3 tickets at 45 euros each" -> 135.0), or a value stated earlier in the conversation,
including in an earlier tool result. The final user message never contains that value verbatim.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta

from rftfast.data.record import Call
from rftfast.data.toolworld import vocab as v
from rftfast.data.toolworld.executor import execute
from rftfast.data.toolworld.tasks import FOREIGN_LANGUAGES, Task, currency_word, pick
from rftfast.data.toolworld.tools import CURRENCIES

# --- spoken values and what they mean ------------------------------------------------------------


def relative_day(rng: random.Random, today: date) -> tuple[str, date]:
    """A phrase like 'in three days' or 'this coming Friday', and the date it names."""
    style = rng.randrange(7)
    if style == 0:
        return "today", today
    if style == 1:
        return "tomorrow", today + timedelta(days=1)
    if style == 2:
        return "the day after tomorrow", today + timedelta(days=2)
    if style == 3:
        days = rng.randrange(3, 13)
        return f"in {v.NUMBER_WORDS[days]} days", today + timedelta(days=days)
    if style == 4:
        weeks = rng.choice((1, 2))
        span = ("a week", "two weeks")[weeks - 1]
        return rng.choice((f"in {span}", f"{span} from today")), today + timedelta(weeks=weeks)
    if style == 5:
        days = rng.randrange(3, 30)
        return f"in {days} days", today + timedelta(days=days)
    weekday = rng.randrange(7)
    ahead = (weekday - today.weekday()) % 7 or 7  # 'this coming Friday' on a Friday is a week away
    return f"this coming {v.WEEKDAYS[weekday]}", today + timedelta(days=ahead)


DURATIONS = (
    ("half an hour", 30),
    ("an hour", 60),
    ("an hour and a half", 90),
    ("two hours", 120),
    ("90 minutes", 90),
    ("a quarter of an hour", 15),
    ("two and a half hours", 150),
    ("three hours", 180),
    ("45 minutes", 45),
    ("one hour and fifteen minutes", 75),
)


def party(rng: random.Random) -> tuple[str, int]:
    """Who is coming, said the way people say it, and the head count."""
    style = rng.randrange(5)
    if style == 0:
        friends = rng.randrange(1, 8)
        return f"me and {v.NUMBER_WORDS[friends]} friend{'s' * (friends > 1)}", friends + 1
    if style == 1:
        return "my wife and me", 2
    if style == 2:
        couples = rng.randrange(2, 5)
        return f"{v.NUMBER_WORDS[couples]} couples", 2 * couples
    if style == 3:
        kids = rng.randrange(1, 5)
        return f"me, my partner and our {v.NUMBER_WORDS[kids]} kid{'s' * (kids > 1)}", 2 + kids
    size = rng.randrange(2, 11)
    return f"the {v.NUMBER_WORDS[size]} of us", size


QUANTITY_WORDS = (
    ("half a", 0.5),
    ("a quarter of a", 0.25),
    ("three quarters of a", 0.75),
    ("one and a half", 1.5),
    ("two and a half", 2.5),
    ("a dozen", 12.0),
)


# --- builders, one reasoning pattern each ----------------------------------------------------------


def dated_request(rng: random.Random, today: date) -> Task:
    """A calendar, reminder, restaurant or flight request whose date is relative to today."""
    when, day = relative_day(rng, today)
    tool = rng.choice(("create_event", "list_events", "set_reminder", "book_restaurant", "find_flights"))
    arguments: dict = {"date": day.isoformat()}
    if tool == "create_event":
        title = rng.choice(v.EVENT_TITLES)
        extras = ""
        if rng.random() < 0.5:
            time = v.random_time(rng)
            arguments["time"], extras = time, f" at {v.twelve_hour(time)}"
        if rng.random() < 0.6:
            words, minutes = rng.choice(DURATIONS)
            arguments["duration_minutes"], extras = minutes, extras + f" for {words}"
        arguments = {"title": title, **arguments}
        query = pick(
            rng,
            (
                "Add '{t}' to my calendar {w}{x}.",
                "Schedule '{t}' {w}{x}.",
                "Put {t} on my calendar {w}{x}.",
                "Create an event '{t}' {w}{x}.",
            ),
            t=title,
            w=when,
            x=extras,
        )
    elif tool == "list_events":
        query = pick(
            rng,
            (
                "What's on my calendar {w}?",
                "Do I have anything scheduled {w}?",
                "Am I busy {w}?",
                "List my events for {w}.",
            ),
            w=when,
        )
    elif tool == "set_reminder":
        text, time = rng.choice(v.REMINDER_TEXTS), v.random_time(rng)
        arguments = {"text": text, **arguments, "time": time}
        query = pick(
            rng,
            (
                "Remind me to {x} {w} at {t}.",
                "Set a reminder {w} at {t} to {x}.",
                "I need to {x} {w}. Remind me at {t}.",
            ),
            x=text,
            w=when,
            t=v.twelve_hour(time),
        )
    elif tool == "book_restaurant":
        name, time = rng.choice(v.RESTAURANTS), v.random_time(rng)
        who, size = party(rng)
        arguments = {"name": name, **arguments, "time": time, "party_size": size}
        query = pick(
            rng,
            (
                "Book a table at {r} for {p} {w} at {t}.",
                "Reserve {r} {w} at {t} for {p}.",
                "Can you get {p} a table at {r} {w}, {t}?",
            ),
            r=name,
            p=who,
            w=when,
            t=v.twelve_hour(time),
        )
    else:
        origin, destination = rng.sample(v.CITIES, 2)
        arguments = {"origin": origin, "destination": destination, **arguments}
        query = pick(
            rng,
            (
                "Find me a flight from {o} to {d} {w}.",
                "I want to fly from {o} to {d} {w}.",
                "Any flights from {o} to {d} {w}?",
            ),
            o=origin,
            d=destination,
            w=when,
        )
    return Task(query, [Call(tool, arguments)], f"relative_date:{tool}")


def spoken_quantity(rng: random.Random, today: date) -> Task:
    """'half a kilogram in pounds': the value is a number written in words."""
    words, value = rng.choice(QUANTITY_WORDS)
    units = rng.choice((v.LENGTH_UNITS, v.MASS_UNITS, v.VOLUME_UNITS))
    from_unit, to_unit = rng.sample(units, 2)
    # 'half a kilogram' but 'two and a half kilograms': singular after 'a', plural otherwise.
    singular = {"feet": "foot", "inches": "inch"}.get(from_unit, from_unit[:-1])
    spoken_unit = singular if words.endswith(" a") else from_unit
    query = pick(
        rng,
        ("How many {t} is {q} {u}?", "Convert {q} {u} to {t}.", "What's {q} {u} in {t}?"),
        q=words,
        u=spoken_unit,
        t=to_unit,
    )
    return Task(
        query, [Call("convert_units", {"value": value, "from_unit": from_unit, "to_unit": to_unit})], "spoken_quantity"
    )


def total_price(rng: random.Random, today: date) -> Task:
    """'3 tickets at 45 euros each': the amount is a product."""
    count, price = rng.randrange(2, 7), float(rng.choice((12, 15, 18, 20, 25, 30, 45, 60, 80, 120)))
    source, target = rng.sample(CURRENCIES, 2)
    item = rng.choice(("tickets", "books", "nights at the hotel", "concert passes", "museum entries"))
    query = pick(
        rng,
        (
            "I'm buying {n} {i} at {p} {f} each. What's the total in {t}?",
            "{N} {i} cost {p} {f} apiece. How much is that altogether in {t}?",
        ),
        n=count,
        N=v.NUMBER_WORDS[count].capitalize(),
        i=item,
        p=v.format_number(price),
        f=v.CURRENCY_NAMES[source],
        t=currency_word(rng, target),
    )
    return Task(
        query,
        [Call("convert_currency", {"amount": count * price, "from_currency": source, "to_currency": target})],
        "total_price",
    )


ACKNOWLEDGEMENTS = (
    "Got it. How can I help?",
    "Noted! What can I do for you?",
    "Sounds good. What do you need?",
    "Okay, I'll keep that in mind.",
)


def said_earlier(statement: str, rng: random.Random) -> list[dict]:
    """An earlier exchange in which the user mentioned the value the final request relies on."""
    return [{"role": "user", "content": statement}, {"role": "assistant", "content": rng.choice(ACKNOWLEDGEMENTS)}]


def city_from_context(rng: random.Random, today: date) -> Task:
    city = rng.choice(v.CITIES)
    statement = pick(
        rng,
        (
            "I'm flying to {c} next month.",
            "My sister lives in {c}.",
            "I'm heading to {c} for a conference.",
            "We're thinking about a holiday in {c}.",
        ),
        c=city,
    )
    if rng.random() < 0.5:
        query = rng.choice(
            ("What's the weather like there?", "How's the weather there right now?", "Can you check the weather there?")
        )
        return Task(query, [Call("get_weather", {"city": city})], "context:city", said_earlier(statement, rng))
    origin = rng.choice([c for c in v.CITIES if c != city])
    when, day = relative_day(rng, today)
    query = pick(
        rng, ("Find me flights there from {o} {w}.", "Are there flights from {o} to there {w}?"), o=origin, w=when
    )
    call = Call("find_flights", {"origin": origin, "destination": city, "date": day.isoformat()})
    return Task(query, [call], "context:city", said_earlier(statement, rng))


def email_from_context(rng: random.Random, today: date) -> Task:
    person = rng.choice(v.PEOPLE)
    address, subject = v.email_of(rng, person), rng.choice(v.EMAIL_SUBJECTS)
    statement = pick(
        rng,
        (
            "My colleague {p}'s email address is {a}.",
            "You can reach {p} at {a}.",
            "{p} just gave me a new address: {a}.",
        ),
        p=person,
        a=address,
    )
    query = pick(
        rng,
        (
            "Send {p} an email with the subject '{s}'.",
            "Email {p} with the subject line '{s}'.",
            "Please write to {p}, subject '{s}'.",
        ),
        p=person,
        s=subject,
    )
    return Task(
        query, [Call("send_email", {"to": address, "subject": subject})], "context:email", said_earlier(statement, rng)
    )


def amount_from_context(rng: random.Random, today: date) -> Task:
    amount = v.random_amount(rng)
    source, target = rng.sample(CURRENCIES, 2)
    statement = pick(
        rng,
        (
            "I have {a} {f} left over from my trip.",
            "My budget for the week is {a} {f}.",
            "The jacket I like costs {a} {f}.",
        ),
        a=v.format_number(amount),
        f=v.CURRENCY_NAMES[source],
    )
    query = pick(
        rng,
        ("How much is that in {t}?", "What's that in {t}?", "Convert that to {t}, please."),
        t=currency_word(rng, target),
    )
    call = Call("convert_currency", {"amount": amount, "from_currency": source, "to_currency": target})
    return Task(query, [call], "context:amount", said_earlier(statement, rng))


def symbol_from_context(rng: random.Random, today: date) -> Task:
    symbol = rng.choice(tuple(v.COMPANIES))
    statement = pick(
        rng,
        (
            "I bought some {c} shares ({s}) last month.",
            "My portfolio is mostly {s}.",
            "A friend told me to keep an eye on {s}.",
        ),
        c=v.COMPANIES[symbol],
        s=symbol,
    )
    query = rng.choice(("How is it doing today?", "What's the price right now?", "Can you check how it's trading?"))
    return Task(query, [Call("get_stock_price", {"symbol": symbol})], "context:symbol", said_earlier(statement, rng))


def tool_exchange(call: Call, summary: str) -> list[dict]:
    """An earlier assistant call, its executed result, and the assistant's summary of it."""
    result = execute(call)
    return [
        {"role": "assistant", "content": "", "tool_calls": [call.to_openai()]},
        {"role": "tool", "name": call.name, "content": json.dumps(result)},
        {"role": "assistant", "content": summary.format(**result)},
    ]


def value_from_tool_result(rng: random.Random, today: date) -> Task:
    """The value to use comes from an earlier tool result: a stock price or a temperature."""
    if rng.random() < 0.5:
        symbol = rng.choice(tuple(v.COMPANIES))
        earlier = Call("get_stock_price", {"symbol": symbol})
        context = [
            {"role": "user", "content": f"What's {symbol} trading at?"},
            *tool_exchange(earlier, "{symbol} is trading at {price} {currency}."),
        ]
        price = execute(earlier)["price"]
        target = rng.choice([c for c in CURRENCIES if c != "USD"])
        query = pick(rng, ("How much is that in {t}?", "Convert that price to {t}."), t=currency_word(rng, target))
        call = Call("convert_currency", {"amount": price, "from_currency": "USD", "to_currency": target})
        return Task(query, [call], "tool_result:price", context, required_tools=("get_stock_price",))
    city = rng.choice(v.CITIES)
    earlier = Call("get_weather", {"city": city})
    context = [
        {"role": "user", "content": f"What's the weather in {city}?"},
        *tool_exchange(earlier, "It's {temperature} degrees Celsius and {condition} in {city}."),
    ]
    temperature = execute(earlier)["temperature"]
    query = rng.choice(
        ("What's that temperature in Fahrenheit?", "Convert that temperature to Fahrenheit.", "And in Fahrenheit?")
    )
    call = Call("convert_units", {"value": temperature, "from_unit": "celsius", "to_unit": "fahrenheit"})
    return Task(query, [call], "tool_result:temperature", context, required_tools=("get_weather",))


def language_from_context(rng: random.Random, today: date) -> Task:
    language, phrase = rng.choice(FOREIGN_LANGUAGES), rng.choice(v.PHRASES)
    statement = pick(
        rng, ("My new neighbour only speaks {l}.", "I'm travelling somewhere they speak {l} next week."), l=language
    )
    query = pick(
        rng,
        (
            "How do I say '{p}' to them?",
            "Translate '{p}' into their language.",
            "Help me say '{p}' in the language they speak.",
        ),
        p=phrase,
    )
    call = Call("translate_text", {"text": phrase, "target_language": language})
    return Task(query, [call], "context:language", said_earlier(statement, rng))


BUILDERS = (
    dated_request,
    dated_request,
    dated_request,
    spoken_quantity,
    total_price,
    city_from_context,
    email_from_context,
    amount_from_context,
    symbol_from_context,
    value_from_tool_result,
    language_from_context,
)


def reasoning_task(rng: random.Random, today: date) -> Task:
    return rng.choice(BUILDERS)(rng, today)
