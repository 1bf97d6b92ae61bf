"""Run a tool-world call: validate it against its tool's schema, then compute a plausible result.

Results are deterministic functions of the arguments (a CRC of the text stands in for the
world's state: the weather in a city, a stock's price), so a search or a reward that executes
calls sees the same answer every time. Any call a real API would refuse raises `ValueError`
naming the tool and the argument.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import zlib
from collections.abc import Callable
from datetime import date
from typing import Any

from rftfast.data.record import Call
from rftfast.data.toolworld.tools import TOOLS_BY_NAME, UNITS, ToolTable

JSON_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "object": (dict,), "array": (list,)}


def stable_hash(*parts: Any) -> int:
    """A hash that is the same in every process (the built-in `hash` of a str is salted per run)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode())


# --- validation ---------------------------------------------------------------------------------


def validate(call: Call) -> dict:
    """Check `call` against its tool's schema; return its arguments with the defaults filled in."""
    if isinstance(call, dict):
        call = Call.from_json(call)
    tool = TOOLS_BY_NAME.get(call.name)
    if tool is None:
        raise ValueError(f"unknown tool {call.name!r}; known tools: {', '.join(TOOLS_BY_NAME)}")
    schema = tool["function"]["parameters"]
    properties = schema["properties"]
    if not isinstance(call.arguments, dict):
        raise ValueError(f"{call.name}: arguments must be an object, got {type(call.arguments).__name__}")
    for name in schema["required"]:
        if name not in call.arguments:
            raise ValueError(f"{call.name}: missing required argument {name!r}")
    for name, value in call.arguments.items():
        if name not in properties:
            raise ValueError(f"{call.name}: unexpected argument {name!r}; parameters are {', '.join(properties)}")
        check_value(f"{call.name}: argument {name!r}", value, properties[name])
    defaults = {k: p["default"] for k, p in properties.items() if "default" in p}
    return {**defaults, **call.arguments}


def check_value(where: str, value: Any, spec: dict) -> None:
    """Raise ValueError unless `value` fits the JSON Schema subset the tools use."""
    expected = spec["type"]
    # bool is an int subclass in Python but never a JSON number.
    if isinstance(value, bool) or not isinstance(value, JSON_TYPES[expected]):
        raise ValueError(f"{where} must be {expected_name(expected)}, got {type(value).__name__} {value!r:.40}")
    if expected == "number" and not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    if "enum" in spec and value not in spec["enum"]:
        raise ValueError(f"{where} must be one of {spec['enum']}, got {value!r}")
    if "minimum" in spec and value < spec["minimum"]:
        raise ValueError(f"{where} must be >= {spec['minimum']}, got {value!r}")
    if "maximum" in spec and value > spec["maximum"]:
        raise ValueError(f"{where} must be <= {spec['maximum']}, got {value!r}")
    if "minLength" in spec and len(value) < spec["minLength"]:
        raise ValueError(f"{where} must not be empty")
    if "pattern" in spec and not re.search(spec["pattern"], value):
        raise ValueError(
            f"{where} does not match the expected format ({spec.get('description', spec['pattern'])}), got {value!r}"
        )
    if spec.get("format") == "date":
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{where} is not a real calendar date: {value!r}") from None


def expected_name(json_type: str) -> str:
    return {"integer": "an integer", "array": "an array", "object": "an object"}.get(json_type, f"a {json_type}")


# --- execution ----------------------------------------------------------------------------------


# Each tool's handler computes its result from the validated arguments, defaults filled in.
HANDLERS: ToolTable[Callable[..., dict]] = ToolTable("handler")
handler = HANDLERS.register


def execute(call: Call) -> dict:
    """The result of running `call`; ValueError for an unknown tool or bad arguments."""
    if isinstance(call, dict):
        call = Call.from_json(call)
    arguments = validate(call)  # before the handler lookup, so an unknown tool gets the ValueError
    return HANDLERS[call.name](**arguments)


CONDITIONS = ("sunny", "partly cloudy", "cloudy", "light rain", "rain", "thunderstorms", "fog", "snow", "windy")


@handler("get_weather")
def get_weather(city: str, unit: str) -> dict:
    h = stable_hash(city.strip().lower())
    celsius = round((h % 400) / 10 - 5, 1)  # -5.0 .. 34.9 °C
    temperature = celsius if unit == "celsius" else round(celsius * 9 / 5 + 32, 1)
    return {
        "city": city,
        "temperature": temperature,
        "unit": unit,
        "condition": CONDITIONS[(h >> 9) % len(CONDITIONS)],
        "humidity_percent": 30 + (h >> 13) % 61,
    }


@handler("convert_units")
def convert_units(value: float, from_unit: str, to_unit: str) -> dict:
    (dimension, from_factor), (to_dimension, to_factor) = UNITS[from_unit], UNITS[to_unit]
    if dimension != to_dimension:
        raise ValueError(f"convert_units: cannot convert {from_unit} ({dimension}) to {to_unit} ({to_dimension})")
    if dimension == "temperature":
        celsius = value if from_unit == "celsius" else (value - 32) * 5 / 9
        result = celsius if to_unit == "celsius" else celsius * 9 / 5 + 32
    else:
        result = value * from_factor / to_factor
    # Six significant digits, not fixed decimals: a gram in pounds is 0.00220462, not 0.0022.
    return {"value": value, "from_unit": from_unit, "result": float(f"{result:.6g}"), "to_unit": to_unit}


@handler("create_event")
def create_event(title: str, date: str, duration_minutes: int, time: str | None = None) -> dict:
    event = {
        "event_id": f"evt_{stable_hash(title, date, time):08x}",
        "title": title,
        "date": date,
        "duration_minutes": duration_minutes,
        "status": "created",
    }
    return event | ({"time": time} if time else {"all_day": True})


CALENDAR_ENTRIES = (
    "Team standup",
    "Gym",
    "Lunch with Alex",
    "Project review",
    "Call with the bank",
    "Yoga class",
    "Dentist",
    "1:1 with manager",
    "Grocery run",
    "Book club",
)


@handler("list_events")
def list_events(date: str) -> dict:
    h = stable_hash("calendar", date)
    count = h % 4  # some days are empty
    events = [
        {
            "title": CALENDAR_ENTRIES[(h >> (4 * i + 2)) % len(CALENDAR_ENTRIES)],
            "time": f"{8 + 3 * i + (h >> (3 * i)) % 3:02d}:{15 * ((h >> i) % 4):02d}",
        }
        for i in range(count)
    ]
    return {"date": date, "events": events}


RATES_IN_USD = {
    "USD": 1.0,
    "EUR": 1.08,
    "GBP": 1.27,
    "JPY": 0.0067,
    "CHF": 1.12,
    "CAD": 0.74,
    "AUD": 0.66,
    "CNY": 0.14,
    "INR": 0.012,
    "MXN": 0.058,
    "SEK": 0.095,
    "BRL": 0.2,
}


@handler("convert_currency")
def convert_currency(amount: float, from_currency: str, to_currency: str) -> dict:
    rate = RATES_IN_USD[from_currency] / RATES_IN_USD[to_currency]
    return {
        "amount": amount,
        "from_currency": from_currency,
        "converted_amount": round(amount * rate, 2),
        "to_currency": to_currency,
        "rate": round(rate, 6),
    }


@handler("web_search")
def web_search(query: str, max_results: int) -> dict:
    slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-") or "result"
    sites = (
        "en.wikipedia.org",
        "www.nytimes.com",
        "www.reddit.com",
        "medium.com",
        "www.bbc.co.uk",
        "stackexchange.com",
    )
    h = stable_hash(query)
    results = [
        {
            "title": f"{query} - result {i + 1}",
            "url": f"https://{sites[(h + i) % len(sites)]}/{slug}",
            "snippet": f"An overview of {query}.",
        }
        for i in range(max_results)
    ]
    return {"query": query, "results": results}


@handler("send_email")
def send_email(to: str, subject: str, body: str) -> dict:
    return {"status": "sent", "message_id": f"msg_{stable_hash(to, subject, body):08x}", "to": to, "subject": subject}


@handler("set_reminder")
def set_reminder(text: str, date: str, time: str) -> dict:
    return {
        "status": "scheduled",
        "reminder_id": f"rem_{stable_hash(text, date, time):08x}",
        "text": text,
        "date": date,
        "time": time,
    }


@handler("get_stock_price")
def get_stock_price(symbol: str) -> dict:
    h = stable_hash("stock", symbol)
    change = ((h >> 16) % 1000 - 500) / 100  # -5.00 .. +4.99 %
    return {"symbol": symbol, "price": round(10 + (h % 49000) / 100, 2), "currency": "USD", "change_percent": change}


@handler("translate_text")
def translate_text(text: str, target_language: str, source_language: str | None = None) -> dict:
    # No real translation: a tagged echo is enough for a reward that only checks the call ran.
    return {
        "translated_text": f"[{target_language}] {text}",
        "source_language": source_language or "English",
        "target_language": target_language,
    }


OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


@handler("calculate")
def calculate(expression: str) -> dict:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        raise ValueError(f"calculate: not an arithmetic expression: {expression!r}") from None
    try:
        result = evaluate(tree.body)
    except ZeroDivisionError:
        raise ValueError(f"calculate: division by zero in {expression!r}") from None
    return {"expression": expression, "result": round(result, 10) if isinstance(result, float) else result}


def evaluate(node: ast.AST) -> int | float:
    """Arithmetic only: numbers and the operators in OPERATORS, never names, calls or attributes."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        left, right = evaluate(node.left), evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 100:  # keeps 9**9**9 from hanging the executor
            raise ValueError(f"calculate: exponent {right} is too large")
        return OPERATORS[type(node.op)](left, right)
    raise ValueError(f"calculate: unsupported element {ast.dump(node)[:60]!r} in expression")


@handler("book_restaurant")
def book_restaurant(name: str, date: str, time: str, party_size: int) -> dict:
    return {
        "status": "confirmed",
        "confirmation": f"R{stable_hash(name, date, time, party_size) % 1_000_000:06d}",
        "name": name,
        "date": date,
        "time": time,
        "party_size": party_size,
    }


AIRLINES = ("SkyWays", "Aurora Air", "BlueJet", "Northwind", "Meridian")
CABIN_PRICE_FACTOR = {"economy": 1.0, "premium_economy": 1.6, "business": 3.2, "first": 5.5}


@handler("find_flights")
def find_flights(origin: str, destination: str, date: str, cabin_class: str, passengers: int) -> dict:
    h = stable_hash(origin.lower(), destination.lower(), date)
    flights = []
    for i in range(2 + h % 3):
        base = 80 + (h >> (5 + i)) % 600
        departure = f"{6 + 4 * i:02d}:{(h >> i) % 4 * 15:02d}"
        flights.append(
            {
                "airline": AIRLINES[(h >> i) % len(AIRLINES)],
                "departure": departure,
                "price_usd": round(base * CABIN_PRICE_FACTOR[cabin_class] * passengers, 2),
            }
        )
    return {
        "origin": origin,
        "destination": destination,
        "date": date,
        "cabin_class": cabin_class,
        "passengers": passengers,
        "flights": flights,
    }


SPEED_KMH = {"driving": 50, "walking": 5, "transit": 30, "cycling": 15}


@handler("get_directions")
def get_directions(origin: str, destination: str, mode: str) -> dict:
    distance = round(1 + stable_hash(origin.lower(), destination.lower()) % 300 / 10, 1)
    return {
        "origin": origin,
        "destination": destination,
        "mode": mode,
        "distance_km": distance,
        "duration_minutes": max(1, round(distance / SPEED_KMH[mode] * 60)),
    }


HANDLERS.complete()
