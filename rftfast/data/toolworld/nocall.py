"""Level 6: messages where the right answer is text, not a call.

Two kinds: chit-chat that needs no tool, and requests that none of the offered tools can
serve. The second kind offers near misses on purpose (a stock *price* tool for a request to
*buy* shares) and never offers a tool that would serve the request, nor web_search, which
would half-serve almost anything.
"""

from __future__ import annotations

import random
from datetime import date

from rftfast.data.toolworld import vocab as v
from rftfast.data.toolworld.tasks import FOREIGN_LANGUAGES, Task, pick
from rftfast.data.toolworld.tools import CURRENCIES

CHIT_CHAT = (
    ("Hi there!", "Hello! How can I help you today?"),
    ("Good morning!", "Good morning! What can I do for you?"),
    ("How are you doing today?", "I'm doing well, thanks for asking! How can I help?"),
    ("Thanks, that's all I needed.", "You're welcome! Have a great day."),
    ("Thank you so much for your help!", "Happy to help! Let me know if you need anything else."),
    ("What can you help me with?", "I can help with the tasks my tools support. Just tell me what you need."),
    ("Tell me a joke.", "Why don't scientists trust atoms? Because they make up everything!"),
    ("Never mind, I figured it out.", "Great, glad you sorted it out!"),
    ("Goodbye!", "Goodbye! Take care."),
    ("Are you a robot?", "I'm an AI assistant. How can I help you?"),
    ("That's great, thanks!", "You're welcome!"),
    ("I'm bored.", "Sorry to hear that! Want me to help you plan something fun?"),
    ("Can you keep a secret?", "I don't remember anything after our conversation ends, so your secret is safe."),
    ("What's your name?", "I'm your assistant. What can I do for you?"),
)
GREETINGS = ("Hi, I'm {p}!", "Hello, my name is {p}.", "Hey, {p} here.")


def chit_chat(rng: random.Random, today: date) -> Task:
    if rng.random() < 0.3:
        person = rng.choice(v.PEOPLE)
        return Task(
            pick(rng, GREETINGS, p=person), f"Nice to meet you, {person}! How can I help you today?", "chit_chat"
        )
    query, reply = rng.choice(CHIT_CHAT)
    return Task(query, reply, "chit_chat")


def unsupported_request(rng: random.Random, today: date) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    """(query, what cannot be done, near-miss tools, tools that would serve it) for one out-of-reach request."""
    kind = rng.randrange(12)
    if kind == 0:
        return (
            pick(
                rng,
                ("Order a {f} from {r} for delivery.", "Can you get me a {f} delivered from {r}?"),
                f=rng.choice(("pepperoni pizza", "pad thai", "veggie burger", "sushi platter")),
                r=rng.choice(v.RESTAURANTS),
            ),
            "order food",
            ("book_restaurant",),
            (),
        )
    if kind == 1:
        return (
            pick(rng, ("Book me a taxi to {p}.", "Call a cab to take me to {p}."), p=rng.choice(v.PLACES)),
            "book a taxi",
            ("get_directions",),
            (),
        )
    if kind == 2:
        return (
            pick(
                rng,
                ("Play {s} on my speakers.", "Put on some {s}."),
                s=rng.choice(("jazz", "Bohemian Rhapsody", "my workout playlist", "classical music")),
            ),
            "play music",
            (),
            (),
        )
    if kind == 3:
        return (
            pick(
                rng,
                ("Turn off the lights in the {r}.", "Set the thermostat in the {r} to 21 degrees."),
                r=rng.choice(("kitchen", "bedroom", "living room", "office")),
            ),
            "control smart-home devices",
            ("set_reminder",),
            (),
        )
    if kind == 4:
        return (
            pick(rng, ("Call {p} on the phone.", "Text {p} that I'm running late."), p=rng.choice(v.PEOPLE)),
            "make calls or send text messages",
            ("send_email",),
            (),
        )
    if kind == 5:
        return (
            pick(
                rng,
                ("Buy {n} shares of {s}.", "Sell all my {s} stock."),
                n=rng.randrange(2, 50),
                s=rng.choice(tuple(v.COMPANIES)),
            ),
            "buy or sell shares",
            ("get_stock_price",),
            (),
        )
    if kind == 6:
        return (
            pick(rng, ("Cancel my '{t}' event.", "Delete '{t}' from my calendar."), t=rng.choice(v.EVENT_TITLES)),
            "delete calendar events",
            ("create_event", "list_events"),
            (),
        )
    if kind == 7:
        return (
            pick(
                rng, ("Book me a hotel room in {c}.", "Find me a hotel in {c} for the weekend."), c=rng.choice(v.CITIES)
            ),
            "book hotels",
            ("find_flights", "book_restaurant"),
            (),
        )
    if kind == 8:
        return (
            pick(rng, ("What's the weather in {c}?", "Is it raining in {c}?"), c=rng.choice(v.CITIES)),
            "check the weather",
            ("get_directions", "find_flights"),
            ("get_weather",),
        )
    if kind == 9:
        return (
            pick(rng, ("What's {s} trading at?", "Check the price of {s} stock."), s=rng.choice(tuple(v.COMPANIES))),
            "look up stock prices",
            ("convert_currency",),
            ("get_stock_price",),
        )
    if kind == 10:
        return (
            pick(
                rng,
                ("Translate '{p}' into {l}.", "How do you say '{p}' in {l}?"),
                p=rng.choice(v.PHRASES),
                l=rng.choice(FOREIGN_LANGUAGES),
            ),
            "translate text",
            ("send_email",),
            ("translate_text",),
        )
    source, target = rng.sample(CURRENCIES, 2)
    return (
        f"Convert {v.format_number(v.random_amount(rng))} {source} to {target}.",
        "convert currencies",
        ("convert_units", "calculate"),
        ("convert_currency",),
    )


REFUSALS = (
    "Sorry, I can't {x} with the tools I have.",
    "I'm not able to {x}: none of my available tools support that.",
    "Unfortunately I have no tool to {x}.",
)


def out_of_reach(rng: random.Random, today: date) -> Task:
    query, capability, near, serving = unsupported_request(rng, today)
    return Task(
        query,
        pick(rng, REFUSALS, x=capability),
        "unsupported",
        near_misses=near,
        forbidden_tools=(*serving, "web_search"),
    )


def no_call_task(rng: random.Random, today: date) -> Task:
    return chit_chat(rng, today) if rng.random() < 0.35 else out_of_reach(rng, today)
