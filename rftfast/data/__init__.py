"""Tool-use data: the canonical record, call parsing and rendering, importers, and the tool world."""

from rftfast.data.calls import parse_calls, render_calls
from rftfast.data.record import Call, ParseError, Record, RecordError

__all__ = ["Call", "ParseError", "Record", "RecordError", "parse_calls", "render_calls"]
