"""Importers from the public tool-use formats to canonical `Record`s.

Each importer takes one raw record (a dict, as read from the file) and returns the canonical
records it holds, or raises `RecordError` saying what is wrong. Conversations with several
assistant turns give one record per assistant turn (the history up to it, and that turn as the
answer), so no supervised turn is lost.

Records come out in one shape whatever the source: the tools in `tools` and no longer in the system
prompt (a chat template prints its own list; two lists would disagree), calls as `tool_calls`, one tool
message per call result carrying the function's `name` where the source gives it, and an `id` that is the
source's own or, when it has none (ToolACE, Glaive), one made from the record's content.

| format   | shape (one raw record)                                                                 |
|----------|----------------------------------------------------------------------------------------|
| toolace  | `system` (tools as a JSON list inside the text) + `conversations` [{from, value}];      |
|          | calls in bracket syntax `[Get Weather(city="Paris")]`                                  |
| xlam     | `query`, `tools` and `answers` as JSON strings; flat Python-typed parameter schemas    |
| glaive   | `system` ("SYSTEM: ... {function json} ...") + `chat` with USER:/ASSISTANT:/FUNCTION    |
|          | RESPONSE: markers; calls as `<functioncall> {"name": .., "arguments": '{..}'}`        |
| hermes   | `conversations` [{from: system/human/gpt/tool, value}], tools in `<tools>` or `tools`; |
|          | calls as `<tool_call>{...}</tool_call>` (JSON or Python-dict quoting)                  |
| bfcl     | BFCL test entry {id, question, function} + its `possible_answer` entry (evaluation)    |
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from rftfast.answer import parse_calls
from rftfast.data.record import Call, ParseError, Record, RecordError, UnsupportedRecord, normalize_tool

# ----------------------------------------------------------------------------- shared helpers


def _require(raw: Any, key: str, kind: type, where: str):
    if not isinstance(raw, dict) or key not in raw:
        raise RecordError(f"{where}: missing field {key!r}")
    if not isinstance(raw[key], kind):
        raise RecordError(f"{where}.{key}: expected {kind.__name__}, got {type(raw[key]).__name__}")
    return raw[key]


def _json_values(text: str) -> list[tuple[int, int, Any]]:
    """Every top-level JSON object or array embedded in free text, in order, as (start, end, value)."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while True:
        starts = [j for j in (text.find("{", i), text.find("[", i)) if j >= 0]
        if not starts:
            return found
        j = min(starts)
        try:
            value, end = decoder.raw_decode(text, j)
        except json.JSONDecodeError:
            i = j + 1
            continue
        found.append((j, end, value))
        i = end


def _without_tool_lists(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` (a system prompt) less the tool lists at `spans`, and the clause that introduces each
    ("Here is a list of functions ...:"), the pieces joined by a line break."""
    for start, end in sorted(spans, reverse=True):
        left, right = text[:start].rstrip(), text[end:].lstrip()
        if left.endswith((":", "-")):  # the lead-in clause, back to the end of the sentence or line before it
            left = left[: max(left.rfind(". ") + 1, left.rfind("\n"), 0)].rstrip()
        right = right.removeprefix(".").lstrip()  # "...: [list]. Next sentence"
        text = left + ("\n" if left and right else "") + right
    return text.strip()


def _record_id(raw: Any, source: str) -> str:
    """The raw record's own id, or `<source>-<hash of its content>`: stable across runs, file orders and
    subsets, and distinct for distinct records (ToolACE and Glaive records carry no id)."""
    own = raw.get("id") if isinstance(raw, dict) else None
    if own is not None and own != "":
        return str(own)
    text = json.dumps(raw, sort_keys=True, ensure_ascii=False, default=str)
    return f"{source}-{hashlib.blake2b(text.encode(), digest_size=6).hexdigest()}"


def _json_text(value: Any) -> str:
    """A tool result as a message's content: text as it is, anything else as JSON (its repr if not JSON)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):  # a Python literal JSON has no form for (a set, bytes)
        return repr(value)


def _loads_lenient(text: str, where: str) -> Any:
    """JSON, or a Python literal (several datasets quote with ' or write True/None)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError) as e:
        raise RecordError(f"{where}: neither JSON nor a Python literal: {e}") from None


def _per_assistant_turn(
    messages: list[dict], tools: list[dict], record_id: str, meta: dict, where: str
) -> list[Record]:
    """One record per assistant turn: the history before it, and the turn as the answer."""
    out = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        answer = [Call.from_json(c) for c in m["tool_calls"]] if m.get("tool_calls") else m.get("content") or ""
        if i == 0:
            raise RecordError(f"{where}: conversation starts with an assistant turn")
        out.append(Record([dict(x) for x in messages[:i]], tools, answer, f"{record_id}-{len(out)}", dict(meta)))
    if not out:
        raise RecordError(f"{where}: no assistant turn to learn from")
    return out


def _role(turn: Any, roles: dict[str, str]) -> str | None:
    """The canonical role of a `{"from": .., "value": str}` turn, or None when it is not one."""
    if not isinstance(turn, dict) or not isinstance(turn.get("from"), str) or not isinstance(turn.get("value"), str):
        return None
    return roles.get(turn["from"])


def _assistant(calls_or_text: list[Call] | str) -> dict:
    if isinstance(calls_or_text, str):
        return {"role": "assistant", "content": calls_or_text}
    return {"role": "assistant", "content": "", "tool_calls": [c.to_openai() for c in calls_or_text]}


# JSON Schema type names for the dialects seen in the wild (BFCL's "dict", Python's "str", ...).
_TYPE_NAMES = {
    "dict": "object",
    "object": "object",
    "str": "string",
    "string": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "list": "array",
    "array": "array",
    "tuple": "array",
    "any": "string",
    "none": "null",
}


def _python_type_schema(type_text: str) -> tuple[dict, bool]:
    """('List[int], optional') -> ({"type": "array", "items": {"type": "integer"}}, optional=True)."""
    text = type_text.strip()
    optional = False
    if text.lower().endswith(", optional"):
        text, optional = text[: -len(", optional")].strip(), True
    m = re.fullmatch(r"(?i)(optional)\[(.*)\]", text)
    if m:
        text, optional = m.group(2).strip(), True
    m = re.fullmatch(r"(?i)(list|tuple|set|sequence)\[(.*)\]", text)
    if m:
        return {"type": "array", "items": _python_type_schema(m.group(2))[0]}, optional
    m = re.fullmatch(r"(?i)(dict|mapping)(\[.*\])?", text)
    if m:
        return {"type": "object"}, optional
    m = re.fullmatch(r"(?i)union\[(.*)\]", text)
    if m:  # JSON Schema has no union of Python types we can trust; take the first
        return _python_type_schema(m.group(1).split(",")[0])[0], optional
    return {"type": _TYPE_NAMES.get(text.lower(), "string")}, optional


# ----------------------------------------------------------------------------- ToolACE


def _toolace_tools(system: str, where: str) -> tuple[list[dict], str]:
    """(the tools, the system prompt without their list)."""
    for start, end, value in _json_values(system):
        if isinstance(value, list) and value and all(isinstance(t, dict) and "name" in t for t in value):
            tools = [_bfcl_tool(t, f"{where}.system[{i}]") for i, t in enumerate(value)]
            return tools, _without_tool_lists(system, [(start, end)])
    raise RecordError(f"{where}.system: no JSON list of functions found")


def _toolace_results(value: str) -> list[dict]:
    """A ToolACE tool turn (`[{"name": .., "results": ..}, ...]`) as one tool message per result, named;
    a turn of another shape as one message, as it is."""
    try:
        results = json.loads(value)
    except json.JSONDecodeError:
        results = None
    if not isinstance(results, list) or not results:
        return [{"role": "tool", "content": value}]
    if not all(isinstance(r, dict) and isinstance(r.get("name"), str) for r in results):
        return [{"role": "tool", "content": value}]
    return [{"role": "tool", "name": r["name"], "content": _json_text(r.get("results", r))} for r in results]


def _bfcl_tool(fn: dict, where: str) -> dict:
    """A function doc in BFCL's dialect ("dict" for object, ...) as a JSON Schema tool."""
    tool = normalize_tool(fn, where)
    tool["function"]["parameters"] = _schema_types(tool["function"]["parameters"])
    return tool


def _schema_types(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _schema_types(v) for k, v in schema.items()}
        if isinstance(schema.get("type"), str):
            out["type"] = _TYPE_NAMES.get(schema["type"].lower(), schema["type"])
        return out
    if isinstance(schema, list):
        return [_schema_types(v) for v in schema]
    return schema


def import_toolace(raw: dict, where: str = "record") -> list[Record]:
    system = _require(raw, "system", str, where)
    turns = _require(raw, "conversations", list, where)
    tools, system = _toolace_tools(system, where)
    roles = {"user": "user", "assistant": "assistant", "tool": "tool", "function": "tool"}
    messages = [{"role": "system", "content": system}] if system else []
    for i, turn in enumerate(turns):
        w = f"{where}.conversations[{i}]"
        role = _role(turn, roles)
        if role is None:
            raise RecordError(f"{w}: expected {{'from': user|assistant|tool, 'value': str}}, got {turn!r:.100}")
        value = turn["value"].strip()
        if role == "assistant" and value.startswith("[") and value.endswith("]"):
            try:
                messages.append(_assistant(parse_calls(value, "pythonic")))
            except ParseError as e:
                raise RecordError(f"{w}: bracket call syntax does not parse: {e}") from None
        elif role == "tool":
            messages.extend(_toolace_results(value))
        else:
            messages.append({"role": role, "content": value})
    return _per_assistant_turn(messages, tools, _record_id(raw, "toolace"), {"source": "toolace"}, where)


# ----------------------------------------------------------------------------- xLAM / APIGen


def _xlam_tool(tool: Any, where: str) -> dict:
    if not isinstance(tool, dict):
        raise RecordError(f"{where}: expected a function schema, got {tool!r:.80}")
    params = tool.get("parameters") or {}
    if not isinstance(params, dict):
        raise RecordError(f"{where}.parameters: expected an object, got {type(params).__name__}")
    if params.get("type") == "object":
        return normalize_tool(tool, where)  # already JSON Schema
    properties, required = {}, []
    for name, spec in params.items():
        if not isinstance(spec, dict):
            raise RecordError(f"{where}.parameters.{name}: expected an object, got {spec!r:.80}")
        schema, optional = _python_type_schema(str(spec.get("type", "str")))
        if spec.get("description"):
            schema["description"] = spec["description"]
        if "default" in spec:
            schema["default"] = spec["default"]
        properties[name] = schema
        if not optional and "default" not in spec:
            required.append(name)
    fn = {
        "name": tool.get("name"),
        "description": tool.get("description", ""),
        "parameters": {"type": "object", "properties": properties, "required": required},
    }
    return normalize_tool(fn, where)


def import_xlam(raw: dict, where: str = "record") -> list[Record]:
    query = _require(raw, "query", str, where)
    tools = raw.get("tools")
    answers = raw.get("answers")
    tools = _loads_lenient(tools, f"{where}.tools") if isinstance(tools, str) else tools
    answers = _loads_lenient(answers, f"{where}.answers") if isinstance(answers, str) else answers
    if not isinstance(tools, list):
        raise RecordError(f"{where}.tools: expected a list of functions")
    if not isinstance(answers, list):
        raise RecordError(f"{where}.answers: expected a list of calls")
    tools = [_xlam_tool(t, f"{where}.tools[{i}]") for i, t in enumerate(tools)]
    calls = [Call.from_json(a, f"{where}.answers[{i}]") for i, a in enumerate(answers)]
    answer: list[Call] | str = calls if calls else ""
    return [Record([{"role": "user", "content": query}], tools, answer, _record_id(raw, "xlam"), {"source": "xlam"})]


# ----------------------------------------------------------------------------- Glaive v2

_GLAIVE_TURN = re.compile(r"(USER|ASSISTANT|FUNCTION RESPONSE):")
_GLAIVE_CALL = re.compile(r"<functioncall>\s*(\{.*\})", re.S)


def _glaive_call(text: str, where: str) -> Call:
    body = _GLAIVE_CALL.search(text).group(1)
    # Glaive quotes the arguments object as a single-quoted string: '{"k": "v"}'.
    quoted = re.search(r"\"arguments\"\s*:\s*'(.*)'\s*\}\s*$", body, re.S)
    if quoted:
        body = body[: quoted.start(1) - 1] + quoted.group(1) + body[quoted.end(1) + 1 :]
    value = _loads_lenient(body, f"{where}: functioncall")
    return Call.from_json(value, where)


def import_glaive(raw: dict, where: str = "record") -> list[Record]:
    chat = _require(raw, "chat", str, where)
    system = raw.get("system") or ""
    if not isinstance(system, str):
        raise RecordError(f"{where}.system: expected str, got {type(system).__name__}")
    system_text = re.sub(r"^\s*SYSTEM:\s*", "", system)
    functions = [(start, end, v) for start, end, v in _json_values(system_text) if isinstance(v, dict) and "name" in v]
    tools = [normalize_tool(v, f"{where}.system[{i}]") for i, (_, _, v) in enumerate(functions)]
    system_text = _without_tool_lists(system_text, [(start, end) for start, end, _ in functions])
    messages = [{"role": "system", "content": system_text}] if system_text else []
    pieces = _GLAIVE_TURN.split(chat)
    if len(pieces) < 3:
        raise RecordError(f"{where}.chat: no USER:/ASSISTANT: markers")
    for k in range(1, len(pieces), 2):
        marker, text = pieces[k], pieces[k + 1].replace("<|endoftext|>", "").strip()
        w = f"{where}.chat[turn {k // 2}]"
        if marker == "USER":
            messages.append({"role": "user", "content": text})
        elif marker == "FUNCTION RESPONSE":
            messages.append({"role": "tool", "content": text, **_answered_call_name(messages)})
        elif "<functioncall>" in text:
            messages.append(_assistant([_glaive_call(text, w)]))
        else:
            messages.append({"role": "assistant", "content": text})
    return _per_assistant_turn(messages, tools, _record_id(raw, "glaive"), {"source": "glaive"}, where)


def _answered_call_name(messages: list[dict]) -> dict:
    """`{"name": ..}` of the call a Glaive function response answers (the one call of the assistant turn
    before it), or {} when that turn is not a single call."""
    calls = messages[-1].get("tool_calls") if messages and messages[-1]["role"] == "assistant" else None
    return {"name": calls[0]["function"]["name"]} if calls and len(calls) == 1 else {}


# ----------------------------------------------------------------------------- Hermes

# Some records write "\n" as the two characters backslash and n around the call.
_HERMES_CALL = re.compile(r"<tool_call>(?:\s|\\n)*(.*?)(?:\s|\\n)*</tool_call>", re.S)
_HERMES_RESPONSE = re.compile(r"<tool_response>\s*(.*?)\s*</tool_response>", re.S)
# The tool list: `<tools>` then a list or an object. The real prompts first say "...function signatures
# within <tools> </tools> XML tags" (or "<tools></tools>"), which holds none: hence the `[` or `{`.
_HERMES_TOOLS = re.compile(r"<tools>\s*([\[{].*?)\s*</tools>", re.S)


def _hermes_tools(raw: dict, system: str, where: str) -> tuple[list[dict], str]:
    """(the tools, the system prompt without their list): from the record's `tools` if it has them, else
    from the list in the system prompt. Hermes-2-Pro's own prompt writes the tools one object after
    another, not as a list."""
    tools = raw.get("tools")
    if isinstance(tools, str) and tools.strip():
        tools = _loads_lenient(tools, f"{where}.tools")
    m = _HERMES_TOOLS.search(system)
    if m:
        if not tools:
            try:
                tools = _loads_lenient(m.group(1), f"{where}.system <tools>")
            except RecordError:
                pieces = _top_level_objects(m.group(1))
                if not pieces:
                    raise
                tools = [_loads_lenient(p, f"{where}.system <tools>") for p in pieces]
        system = _without_tool_lists(system, [m.span()])
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools or [], list):
        raise RecordError(f"{where}.tools: expected a list of tools")
    return [normalize_tool(t, f"{where}.tools[{i}]") for i, t in enumerate(tools or [])], system.strip()


def _top_level_objects(text: str) -> list[str]:
    """The `{...}` pieces of `text`, one after another (braces inside quoted strings do not count)."""
    pieces, depth, quote, start, escaped = [], 0, None, 0, False
    for i, char in enumerate(text):
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "{":
            start = i if depth == 0 else start
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if not depth:
                pieces.append(text[start : i + 1])
    return pieces


def _hermes_results(value: str, where: str) -> list[dict]:
    """A Hermes tool turn as one tool message per `<tool_response>` block, each named by the function its
    `{"name": .., "content": ..}` gives, its content that `content`; a turn of another shape as it is."""
    blocks = _HERMES_RESPONSE.findall(value)
    if not blocks:
        return [{"role": "tool", "content": value.strip()}]
    messages = []
    for block in blocks:
        try:
            result = _loads_lenient(block, where)
        except RecordError:
            result = None
        if isinstance(result, dict) and isinstance(result.get("name"), str) and "content" in result:
            messages.append({"role": "tool", "name": result["name"], "content": _json_text(result["content"])})
        else:
            messages.append({"role": "tool", "content": block})
    return messages


def import_hermes(raw: dict, where: str = "record") -> list[Record]:
    turns = _require(raw, "conversations", list, where)
    roles = {
        "system": "system",
        "human": "user",
        "user": "user",
        "gpt": "assistant",
        "assistant": "assistant",
        "tool": "tool",
    }
    system = next((t["value"] for t in turns if _role(t, roles) == "system"), "")
    tools, system_without_tools = _hermes_tools(raw, system, where)
    messages = []
    for i, turn in enumerate(turns):
        w = f"{where}.conversations[{i}]"
        role = _role(turn, roles)
        if role is None:
            raise RecordError(f"{w}: expected {{'from': system|human|gpt|tool, 'value': str}}, got {turn!r:.100}")
        value = turn["value"]
        blocks = _HERMES_CALL.findall(value) if role == "assistant" else []
        if blocks:
            messages.append(_assistant([Call.from_json(_loads_lenient(b, w), w) for b in blocks]))
        elif role == "tool":
            messages.extend(_hermes_results(value, w))
        elif role == "system" and value == system:  # its tool list is in `tools` now
            if system_without_tools:
                messages.append({"role": "system", "content": system_without_tools})
        else:
            messages.append({"role": role, "content": value.strip()})
    return _per_assistant_turn(messages, tools, _record_id(raw, "hermes"), {"source": "hermes"}, where)


# ----------------------------------------------------------------------------- BFCL


def bfcl_category(entry_id: str) -> str:
    """BFCL's category from an entry id: 'live_parallel_multiple_3' -> 'live_parallel_multiple'."""
    return re.sub(r"_\d+(-\d+)*$", "", entry_id)


def import_bfcl(raw: dict, possible_answer: dict | None = None, where: str = "record") -> list[Record]:
    """A BFCL test entry (and its possible-answer entry) as an evaluation record.

    The answer is built from the first acceptable value of each parameter (optional ones left
    out); `meta` keeps BFCL's own `functions`, `possible_answer` and `category` for the checker.
    """
    entry_id = str(_require(raw, "id", str, where))
    question = _require(raw, "question", list, where)
    functions = _require(raw, "function", list, where)
    if question and isinstance(question[0], list):
        if len(question) != 1:
            raise UnsupportedRecord(f"{where} ({entry_id}): multi-turn entries are not supported")
        question = question[0]
    for i, m in enumerate(question):
        if not isinstance(m, dict):
            raise RecordError(f"{where}.question[{i}]: expected a message {{'role': .., 'content': ..}}, got {m!r:.80}")
    messages = [dict(m) for m in question]
    tools = [_bfcl_tool(f, f"{where}.function[{i}]") for i, f in enumerate(functions)]
    category = bfcl_category(entry_id)
    if possible_answer is None:
        # Only the (ir)relevance categories have no possible answer; any other entry would become a
        # record whose answer is "" (no call), which is wrong, not missing.
        if "relevance" not in category:
            raise RecordError(
                f"{where} ({entry_id}): no possible answer for this entry (BFCL keeps them in "
                "possible_answer/<the test file's name>)"
            )
        truth = []
    else:
        if possible_answer.get("id") not in (None, entry_id):
            raise RecordError(f"{where}: possible answer id {possible_answer.get('id')!r} does not match {entry_id!r}")
        truth = _require(possible_answer, "ground_truth", list, f"{where} (possible answer {entry_id})")
    calls = []
    for i, item in enumerate(truth):
        name, params = next(iter(item.items())) if isinstance(item, dict) and len(item) == 1 else (None, None)
        if (
            not isinstance(name, str)
            or not isinstance(params, dict)
            or not all(isinstance(values, list) for values in params.values())
        ):
            raise RecordError(
                f"{where}.ground_truth[{i}]: expected {{function: {{param: [values]}}}}, got {item!r:.100}"
            )
        calls.append(Call(name, {k: v[0] for k, v in params.items() if isinstance(v, list) and v and v[0] != ""}))
    meta = {"source": "bfcl", "category": category, "functions": functions, "possible_answer": truth}
    return [Record(messages, tools, calls if calls else "", entry_id, meta)]


def import_canonical(raw: dict, where: str = "record") -> list[Record]:
    """A record already in the canonical shape (validated); one without an id gets one from its content."""
    record = Record.from_json(raw, where)
    record.id = record.id or _record_id(raw, "record")
    return [record]


IMPORTERS: dict[str, Callable[..., list[Record]]] = {
    "toolace": import_toolace,
    "xlam": import_xlam,
    "glaive": import_glaive,
    "hermes": import_hermes,
    "canonical": import_canonical,
}
