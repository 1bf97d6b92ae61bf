"""Tool-use data: the canonical record, importers, IO, chat rendering, and the tool world.

Reading and writing calls as text is `rftfast.answer`'s (`parse_calls`, `render_calls`).
"""

from rftfast.data.record import Call, ParseError, Record, RecordError

__all__ = ["Call", "ParseError", "Record", "RecordError"]
