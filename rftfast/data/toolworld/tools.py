"""The tool world's tools: fourteen everyday functions described in JSON Schema.

Each schema is what a model sees in its prompt and what the executor validates against, so it is
strict: every parameter is typed, required ones are listed, closed sets are enums, and unknown
parameters are refused (`additionalProperties: false`). Optional parameters state their default.
"""

from __future__ import annotations

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


def text(description: str) -> dict:
    return {"type": "string", "minLength": 1, "description": description}


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
            "unit": {
                "type": "string",
                "enum": list(TEMPERATURE_UNITS),
                "default": "celsius",
                "description": "Temperature unit.",
            },
        },
        ["city"],
    ),
    function(
        "convert_units",
        "Convert a quantity between units of length, mass, volume or temperature.",
        {
            "value": {"type": "number", "description": "The quantity to convert."},
            "from_unit": {"type": "string", "enum": list(UNITS), "description": "Unit of the given value."},
            "to_unit": {"type": "string", "enum": list(UNITS), "description": "Unit to convert to."},
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
            "duration_minutes": {
                "type": "integer",
                "minimum": 1,
                "maximum": 1440,
                "default": 60,
                "description": "Length of the event in minutes.",
            },
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
            "from_currency": {
                "type": "string",
                "enum": list(CURRENCIES),
                "description": "ISO code of the given amount.",
            },
            "to_currency": {"type": "string", "enum": list(CURRENCIES), "description": "ISO code to convert to."},
        },
        ["amount", "from_currency", "to_currency"],
    ),
    function(
        "web_search",
        "Search the web and return the top results.",
        {
            "query": text("What to search for."),
            "max_results": {
                "type": "integer",
                "minimum": 1,
                "maximum": 20,
                "default": 5,
                "description": "How many results to return.",
            },
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
            "target_language": {
                "type": "string",
                "enum": list(LANGUAGES),
                "description": "Language to translate into.",
            },
            "source_language": {
                "type": "string",
                "enum": list(LANGUAGES),
                "description": "Language of the text; detected automatically when omitted.",
            },
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
            "party_size": {"type": "integer", "minimum": 1, "maximum": 20, "description": "Number of guests."},
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
            "cabin_class": {
                "type": "string",
                "enum": list(CABIN_CLASSES),
                "default": "economy",
                "description": "Cabin class.",
            },
            "passengers": {
                "type": "integer",
                "minimum": 1,
                "maximum": 9,
                "default": 1,
                "description": "Number of passengers.",
            },
        },
        ["origin", "destination", "date"],
    ),
    function(
        "get_directions",
        "Get directions between two places.",
        {
            "origin": text("Where to start."),
            "destination": text("Where to go."),
            "mode": {
                "type": "string",
                "enum": list(TRAVEL_MODES),
                "default": "driving",
                "description": "How to travel.",
            },
        },
        ["origin", "destination"],
    ),
]

TOOLS_BY_NAME: dict[str, dict] = {tool["function"]["name"]: tool for tool in TOOLS}

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
