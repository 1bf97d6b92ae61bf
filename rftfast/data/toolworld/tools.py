"""The tool world's tools: fourteen everyday functions described in JSON Schema.

Each schema is what a model sees in its prompt and what the executor validates against, so it is
strict: every parameter is typed, required ones are listed, closed sets are enums, and unknown
parameters are refused (`additionalProperties: false`). Optional parameters state their default.

TOOLS is the one list of tools: a `ToolTable` attaches one function to each (the executor's
handlers, the generator's intents) and refuses a name TOOLS lacks or a tool left without one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

UNITS = {  # unit name -> (dimension, factor to the dimension's base unit); temperatures are special-cased
    "meters": ("length", 1.0),
    "kilometers": ("length", 1000.0),
    "centimeters": ("length", 0.01),
    "miles": ("length", 1609.344),
    "feet": ("length", 0.3048),
    "inches": ("length", 0.0254),
    "kilograms": ("mass", 1.0),
    "grams": ("mass", 0.001),
    "pounds": ("mass", 0.45359237),
    "ounces": ("mass", 0.028349523125),
    "liters": ("volume", 1.0),
    "milliliters": ("volume", 0.001),
    "gallons": ("volume", 3.785411784),
    "celsius": ("temperature", 1.0),
    "fahrenheit": ("temperature", 1.0),
}
CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "CNY", "INR", "MXN", "SEK", "BRL")
LANGUAGES = (
    "English",
    "Spanish",
    "French",
    "German",
    "Italian",
    "Portuguese",
    "Dutch",
    "Japanese",
    "Chinese",
    "Korean",
)
TEMPERATURE_UNITS = ("celsius", "fahrenheit")
CABIN_CLASSES = ("economy", "premium_economy", "business", "first")
TRAVEL_MODES = ("driving", "walking", "transit", "cycling")

DATE = {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$", "description": "Date as YYYY-MM-DD."}
TIME = {"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d$", "description": "24-hour time as HH:MM."}


def param(json_type: str, description: str, default: Any = None, **constraints: Any) -> dict:
    """One parameter: its type, constraints, default (when it has one) and description, in that order."""
    spec = {"type": json_type, **constraints}
    if default is not None:
        spec["default"] = default
    return spec | {"description": description}


def text(description: str) -> dict:
    return param("string", description, minLength=1)


def integer(description: str, minimum: int, maximum: int, default: int | None = None) -> dict:
    return param("integer", description, default, minimum=minimum, maximum=maximum)


def one_of(values: Iterable[str], description: str, default: str | None = None) -> dict:
    """A closed set of strings (an enum), e.g. a tuple of names or a dict's keys."""
    return param("string", description, default, enum=list(values))


def function(name: str, description: str, properties: dict, required: list[str]) -> dict:
    """One tool in the canonical `{"type": "function", "function": {...}}` wrapper."""
    parameters = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


TOOLS: list[dict] = [
    function(
        "get_weather",
        "Get the current weather for a city.",
        {
            "city": text("City name, e.g. 'Paris'."),
            "unit": one_of(TEMPERATURE_UNITS, "Temperature unit.", default="celsius"),
        },
        ["city"],
    ),
    function(
        "convert_units",
        "Convert a quantity between units of length, mass, volume or temperature.",
        {
            "value": {"type": "number", "description": "The quantity to convert."},
            "from_unit": one_of(UNITS, "Unit of the given value."),
            "to_unit": one_of(UNITS, "Unit to convert to."),
        },
        ["value", "from_unit", "to_unit"],
    ),
    function(
        "create_event",
        "Create an event in the user's calendar.",
        {
            "title": text("Title of the event."),
            "date": DATE,
            "time": dict(TIME, description="Start time as HH:MM (24-hour); all-day event when omitted."),
            "duration_minutes": integer("Length of the event in minutes.", 1, 1440, default=60),
        },
        ["title", "date"],
    ),
    function(
        "list_events",
        "List the events in the user's calendar on a date.",
        {
            "date": DATE,
        },
        ["date"],
    ),
    function(
        "convert_currency",
        "Convert an amount of money from one currency to another at today's rate.",
        {
            "amount": {"type": "number", "minimum": 0, "description": "Amount of money to convert."},
            "from_currency": one_of(CURRENCIES, "ISO code of the given amount."),
            "to_currency": one_of(CURRENCIES, "ISO code to convert to."),
        },
        ["amount", "from_currency", "to_currency"],
    ),
    function(
        "web_search",
        "Search the web and return the top results.",
        {
            "query": text("What to search for."),
            "max_results": integer("How many results to return.", 1, 20, default=5),
        },
        ["query"],
    ),
    function(
        "send_email",
        "Send an email from the user's account.",
        {
            "to": {
                "type": "string",
                "pattern": r"^[^@\s]+@[^@\s]+\.[a-z]+$",
                "description": "Recipient email address.",
            },
            "subject": text("Subject line."),
            "body": {"type": "string", "default": "", "description": "Message text."},
        },
        ["to", "subject"],
    ),
    function(
        "set_reminder",
        "Set a reminder that notifies the user at a date and time.",
        {
            "text": text("What to be reminded of."),
            "date": DATE,
            "time": TIME,
        },
        ["text", "date", "time"],
    ),
    function(
        "get_stock_price",
        "Get the latest trading price of a stock.",
        {
            "symbol": {"type": "string", "pattern": r"^[A-Z]{1,5}$", "description": "Ticker symbol, e.g. 'AAPL'."},
        },
        ["symbol"],
    ),
    function(
        "translate_text",
        "Translate text into another language.",
        {
            "text": text("The text to translate."),
            "target_language": one_of(LANGUAGES, "Language to translate into."),
            "source_language": one_of(LANGUAGES, "Language of the text; detected automatically when omitted."),
        },
        ["text", "target_language"],
    ),
    function(
        "calculate",
        "Evaluate an arithmetic expression (+, -, *, /, **, %, parentheses).",
        {
            "expression": text("The expression, e.g. '(3 + 4) * 2'."),
        },
        ["expression"],
    ),
    function(
        "book_restaurant",
        "Reserve a table at a restaurant.",
        {
            "name": text("Name of the restaurant."),
            "date": DATE,
            "time": TIME,
            "party_size": integer("Number of guests.", 1, 20),
        },
        ["name", "date", "time", "party_size"],
    ),
    function(
        "find_flights",
        "Search for flights between two cities on a date.",
        {
            "origin": text("Departure city."),
            "destination": text("Arrival city."),
            "date": DATE,
            "cabin_class": one_of(CABIN_CLASSES, "Cabin class.", default="economy"),
            "passengers": integer("Number of passengers.", 1, 9, default=1),
        },
        ["origin", "destination", "date"],
    ),
    function(
        "get_directions",
        "Get directions between two places.",
        {
            "origin": text("Where to start."),
            "destination": text("Where to go."),
            "mode": one_of(TRAVEL_MODES, "How to travel.", default="driving"),
        },
        ["origin", "destination"],
    ),
]

TOOLS_BY_NAME: dict[str, dict] = {tool["function"]["name"]: tool for tool in TOOLS}


def optional_parameters(name: str) -> list[str]:
    """The parameters of tool `name` that a call may leave out."""
    parameters = TOOLS_BY_NAME[name]["function"]["parameters"]
    return [p for p in parameters["properties"] if p not in parameters["required"]]


F = TypeVar("F", bound=Callable[..., Any])


class ToolTable(dict[str, F], Generic[F]):
    """One function per tool, keyed by the tool's name: `@table.register("get_weather")` adds one.

    TOOLS is the one list of tools; a table only attaches functions to it. A name is checked
    against TOOLS when it is registered, and `complete()`, called once every function is defined,
    checks that no tool was left out and puts the entries in TOOLS order, so a draw from a table
    never depends on the order its functions happen to be written in.
    """

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role  # what the functions are, for error messages: "handler", "intent"

    def register(self, name: str) -> Callable[[F], F]:
        def add(function: F) -> F:
            if name not in TOOLS_BY_NAME:
                raise ValueError(f"{self.role} {function.__name__}: there is no tool {name!r}")
            if name in self:
                raise ValueError(f"{self.role} {function.__name__}: {name!r} already has {self[name].__name__}")
            self[name] = function
            return function

        return add

    def complete(self) -> None:
        missing = [name for name in TOOLS_BY_NAME if name not in self]
        if missing:
            raise ValueError(f"no {self.role} for {', '.join(missing)}")
        in_order = [(name, self[name]) for name in TOOLS_BY_NAME]
        self.clear()
        self.update(in_order)


# Tools a model could mistake for one another: level 3 draws its distractors from the same family first.
FAMILIES: dict[str, tuple[str, ...]] = {
    "calendar": ("create_event", "list_events", "set_reminder", "book_restaurant"),
    "numbers": ("convert_units", "convert_currency", "calculate"),
    "lookup": ("get_weather", "get_stock_price", "web_search"),
    "language": ("send_email", "translate_text", "web_search"),
    "travel": ("find_flights", "get_directions", "book_restaurant", "get_weather"),
}


def confusable_with(name: str) -> list[str]:
    """Other tools that share a family with `name`, in a fixed order."""
    seen: list[str] = []
    for members in FAMILIES.values():
        if name in members:
            seen.extend(m for m in members if m != name and m not in seen)
    return seen
