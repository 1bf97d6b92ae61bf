"""Level 6: messages where the right answer is text, not a call.

Two kinds: chit-chat that needs no tool, and requests that none of the offered tools can
serve. The second kind offers near misses on purpose (a stock *price* tool for a request to
*buy* shares) and never offers a tool that would serve the request, nor web_search, which
would half-serve almost anything.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


FOODS = ("pepperoni pizza", "pad thai", "veggie burger", "sushi platter")
MUSIC = ("jazz", "Bohemian Rhapsody", "my workout playlist", "classical music")
ROOMS = ("kitchen", "bedroom", "living room", "office")
SYMBOLS = tuple(v.COMPANIES)


def one_each(**values: Sequence[object]) -> Callable[[random.Random], dict]:
    """Slot values drawn one from each of `values`, in the order given."""
    return lambda rng: {slot: rng.choice(choices) for slot, choices in values.items()}


def money(rng: random.Random) -> dict:
    """An amount of money and two different currencies to convert it between."""
    source, target = rng.sample(CURRENCIES, 2)
    return {"source": source, "target": target, "amount": v.format_number(v.random_amount(rng))}


@dataclass(frozen=True)
class OutOfReach:
    """A request that none of the offered tools can serve."""

    phrasings: tuple[str, ...]
    slots: Callable[[random.Random], dict]  # draws the values the phrasing's slots show
    capability: str  # what cannot be done, as the refusal words it
    near_misses: tuple[str, ...] = ()  # tools that look as if they could help, offered on purpose
    serving: tuple[str, ...] = ()  # tools that would serve the request, so never offered


# The ways a user asks for something out of reach; the slots are filled from each request's `slots`.
ORDER_FOOD = ("Order a {food} from {restaurant} for delivery.", "Can you get me a {food} delivered from {restaurant}?")
CALL_TAXI = ("Book me a taxi to {place}.", "Call a cab to take me to {place}.")
PLAY_MUSIC = ("Play {music} on my speakers.", "Put on some {music}.")
CONTROL_DEVICES = ("Turn off the lights in the {room}.", "Set the thermostat in the {room} to 21 degrees.")
CALL_OR_TEXT = ("Call {person} on the phone.", "Text {person} that I'm running late.")
TRADE_SHARES = ("Buy {count} shares of {symbol}.", "Sell all my {symbol} stock.")
DELETE_EVENT = ("Cancel my '{title}' event.", "Delete '{title}' from my calendar.")
BOOK_HOTEL = ("Book me a hotel room in {city}.", "Find me a hotel in {city} for the weekend.")
ASK_WEATHER = ("What's the weather in {city}?", "Is it raining in {city}?")
ASK_STOCK_PRICE = ("What's {symbol} trading at?", "Check the price of {symbol} stock.")
ASK_TRANSLATION = ("Translate '{phrase}' into {language}.", "How do you say '{phrase}' in {language}?")
ASK_CONVERSION = ("Convert {amount} {source} to {target}.",)

# (phrasings, slot values, what cannot be done, near-miss tools, tools that would serve it), one row a request.
OUT_OF_REACH = (
    OutOfReach(ORDER_FOOD, one_each(food=FOODS, restaurant=v.RESTAURANTS), "order food", ("book_restaurant",)),
    OutOfReach(CALL_TAXI, one_each(place=v.PLACES), "book a taxi", ("get_directions",)),
    OutOfReach(PLAY_MUSIC, one_each(music=MUSIC), "play music"),
    OutOfReach(CONTROL_DEVICES, one_each(room=ROOMS), "control smart-home devices", ("set_reminder",)),
    OutOfReach(CALL_OR_TEXT, one_each(person=v.PEOPLE), "make calls or send text messages", ("send_email",)),
    OutOfReach(TRADE_SHARES, one_each(count=range(2, 50), symbol=SYMBOLS), "buy or sell shares", ("get_stock_price",)),
    OutOfReach(DELETE_EVENT, one_each(title=v.EVENT_TITLES), "delete calendar events", ("create_event", "list_events")),
    OutOfReach(BOOK_HOTEL, one_each(city=v.CITIES), "book hotels", ("find_flights", "book_restaurant")),
    # Requests a tool would serve, made where that tool is not on offer.
    OutOfReach(
        ASK_WEATHER, one_each(city=v.CITIES), "check the weather", ("get_directions", "find_flights"), ("get_weather",)
    ),
    OutOfReach(
        ASK_STOCK_PRICE, one_each(symbol=SYMBOLS), "look up stock prices", ("convert_currency",), ("get_stock_price",)
    ),
    OutOfReach(
        ASK_TRANSLATION,
        one_each(phrase=v.PHRASES, language=FOREIGN_LANGUAGES),
        "translate text",
        ("send_email",),
        ("translate_text",),
    ),
    OutOfReach(ASK_CONVERSION, money, "convert currencies", ("convert_units", "calculate"), ("convert_currency",)),
)


REFUSALS = (
    "Sorry, I can't {x} with the tools I have.",
    "I'm not able to {x}: none of my available tools support that.",
    "Unfortunately I have no tool to {x}.",
)


def out_of_reach(rng: random.Random, today: date) -> Task:
    request = rng.choice(OUT_OF_REACH)
    query = pick(rng, request.phrasings, **request.slots(rng))
    return Task(
        query,
        pick(rng, REFUSALS, x=request.capability),
        "unsupported",
        near_misses=request.near_misses,
        forbidden_tools=(*request.serving, "web_search"),
    )


def no_call_task(rng: random.Random, today: date) -> Task:
    return chit_chat(rng, today) if rng.random() < 0.35 else out_of_reach(rng, today)
