"""The canonical tool-use record every importer produces and every stage consumes.

A `Record` is an OpenAI-style conversation (`messages`) with the tools on offer (`tools`, JSON
Schema), ending where the model must answer, and the ground truth of that answer: a list of
`Call`s, or text when no call is right. Records round-trip through plain JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
# What ties a tool message to the call it answers, as OpenAI's messages carry it: the function's `name`, and the
# `tool_call_id` that is the call's `id`; chat templates print one or the other. Strings, or null for none.
TOOL_LINKS = ("name", "tool_call_id")


class RecordError(ValueError):
    """A record that does not fit the canonical shape; the message says where and what."""


class UnsupportedRecord(RecordError):
    """A well-formed record of a kind rftfast does not import (BFCL's multi-turn entries).

    Not bad input: a conversion skips and counts it whether it stops at bad records or not.
    """


class ParseError(ValueError):
    """Text that does not parse as tool calls; `position` is the character offset of the problem."""

    def __init__(self, message: str, position: int, text: str | None = None) -> None:
        self.position = position
        self.text = text
        context = "" if text is None else f" near {text[max(0, position - 15) : position + 15]!r}"
        super().__init__(f"{message} at position {position}{context}")


@dataclass(frozen=True)
class Call:
    """One function call: a name and its keyword arguments (JSON values)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "arguments": self.arguments}

    def to_openai(self) -> dict:
        """The call as an OpenAI assistant `tool_calls` entry (arguments kept as a dict)."""
        return {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    @classmethod
    def from_json(cls, d: Any, where: str = "call") -> Call:
        if isinstance(d, dict) and "function" in d and isinstance(d["function"], dict):
            d = d["function"]  # OpenAI tool_calls entry
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or not d["name"]:
            raise RecordError(f"{where}: expected {{'name': str, 'arguments': dict}}, got {d!r:.120}")
        args = d.get("arguments", {})
        if isinstance(args, str):  # OpenAI wire format carries arguments as a JSON string
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as e:
                raise RecordError(f"{where}: arguments are not valid JSON: {e}") from None
        if not isinstance(args, dict):
            raise RecordError(f"{where}: arguments must be an object, got {type(args).__name__}")
        return cls(d["name"], args)


@dataclass
class Record:
    """A conversation up to the answer, the tools on offer, and the ground-truth answer."""

    messages: list[dict]
    tools: list[dict]
    answer: list[Call] | str
    id: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def is_call(self) -> bool:
        return not isinstance(self.answer, str)

    @property
    def tool_names(self) -> list[str]:
        return [t["function"]["name"] for t in self.tools]

    def answer_message(self) -> dict:
        """The ground-truth answer as the assistant message that would end the conversation."""
        if isinstance(self.answer, str):
            return {"role": "assistant", "content": self.answer}
        return {"role": "assistant", "content": "", "tool_calls": [c.to_openai() for c in self.answer]}

    def to_json(self) -> dict:
        answer = self.answer if isinstance(self.answer, str) else [c.to_json() for c in self.answer]
        return {"id": self.id, "messages": self.messages, "tools": self.tools, "answer": answer, "meta": self.meta}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), ensure_ascii=False)

    @classmethod
    def from_json(cls, d: Any, where: str = "record") -> Record:
        """Validate and build; every problem raises RecordError naming `where` and the field."""
        if not isinstance(d, dict):
            raise RecordError(f"{where}: expected an object, got {type(d).__name__}")
        for key in ("messages", "tools", "answer"):
            if key not in d:
                raise RecordError(f"{where}: missing field {key!r}")
        messages, tools, answer = d["messages"], d["tools"], d["answer"]
        if not isinstance(messages, list) or not messages:
            raise RecordError(f"{where}.messages: expected a non-empty list")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise RecordError(f"{where}.messages[{i}]: expected a role in {ROLES}, got {m!r:.120}")
            for key in TOOL_LINKS:
                if m.get(key) is not None and not isinstance(m[key], str):  # null: Arrow's "absent"
                    raise RecordError(f"{where}.messages[{i}].{key}: expected a string, got {m[key]!r:.80}")
            if "tool_calls" in m:
                if not isinstance(m["tool_calls"] or [], list):
                    raise RecordError(f"{where}.messages[{i}].tool_calls: expected a list, got {m['tool_calls']!r:.80}")
                m = dict(
                    m,
                    tool_calls=[
                        _canonical_tool_call(c, f"{where}.messages[{i}].tool_calls[{j}]")
                        for j, c in enumerate(m["tool_calls"] or [])
                    ],
                )
                messages[i] = m
        if not isinstance(tools, list):
            raise RecordError(f"{where}.tools: expected a list")
        tools = [normalize_tool(t, f"{where}.tools[{i}]") for i, t in enumerate(tools)]
        if isinstance(answer, list):
            answer = [Call.from_json(c, f"{where}.answer[{i}]") for i, c in enumerate(answer)]
        elif not isinstance(answer, str):
            raise RecordError(f"{where}.answer: expected a list of calls or a string, got {type(answer).__name__}")
        meta = d.get("meta") or {}
        if not isinstance(meta, dict):
            raise RecordError(f"{where}.meta: expected an object")
        return cls(messages, tools, answer, str(d.get("id", "")), meta)

    @classmethod
    def loads(cls, line: str, where: str = "record") -> Record:
        try:
            return cls.from_json(json.loads(line), where)
        except json.JSONDecodeError as e:
            raise RecordError(f"{where}: invalid JSON: {e}") from None


def _canonical_tool_call(entry: Any, where: str) -> dict:
    """An assistant `tool_calls` entry in the OpenAI shape (arguments as a dict), keeping its `id`: a tool
    message's `tool_call_id` points at it."""
    call = Call.from_json(entry, where).to_openai()
    if isinstance(entry, dict) and entry.get("id") is not None:
        if not isinstance(entry["id"], str):
            raise RecordError(f"{where}.id: expected a string, got {entry['id']!r:.80}")
        call = {"id": entry["id"], **call}
    return call


def normalize_tool(tool: Any, where: str = "tool") -> dict:
    """A tool as `{"type": "function", "function": {name, description, parameters}}`.

    Accepts the OpenAI wrapper or a bare function schema (as BFCL, xLAM and Hermes write them).
    """
    fn = tool.get("function") if isinstance(tool, dict) and isinstance(tool.get("function"), dict) else tool
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise RecordError(f"{where}: expected a function schema with a name, got {tool!r:.120}")
    params = fn.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(params, dict):
        raise RecordError(f"{where}.parameters: expected a JSON Schema object")
    out = {"name": fn["name"], "description": fn.get("description", ""), "parameters": params}
    return {"type": "function", "function": out}
