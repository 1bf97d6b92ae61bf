"""Records to token ids for training and search, with the token span of the answer.

The answer is the assistant's *content*: the calls rendered in pythonic form
(`[get_weather(city="Paris")]`) or the plain-text reply. Keeping calls as text (rather than a
template's own tool-call markup) is what lets the search cut an answer into steps and the judge
parse what the model wrote.

With a tokenizer that has a chat template, the prompt is
`apply_chat_template(messages, tools=..., add_generation_prompt=True)` and the answer is whatever
the template appends for the assistant turn. Without one, the fallback template below is used:

    <|system|>
    {system message}

    You can call these functions:
    {one signature per tool, one per line, e.g.
     get_directions(origin: string, destination: string, mode?: "driving"|"walking" = "driving")  # Directions.}
    Answer with the calls as [name(param=value, ...)], or in plain text when no function helps.
    <|user|>
    {user message}
    <|tool|>
    {tool result}
    <|assistant|>
    {assistant message}<|end|>

Signatures keep what choosing and filling a call needs (names, types, `?` for optional, enums,
defaults, formats, the description) in a fraction of the JSON Schema's tokens. An earlier
assistant turn with tool calls shows them in the same pythonic form. Prompt and answer
are tokenized separately and concatenated, exactly as generation sees them: the model continues
the prompt ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rftfast.answer import render_calls
from rftfast.data.record import Call, Record

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

END = "<|end|>"
IGNORE_INDEX = -100


@dataclass
class Example:
    """Token ids of prompt + answer; the answer occupies `input_ids[answer_start:answer_end]`."""

    input_ids: list[int]
    answer_start: int
    answer_end: int
    prompt_text: str
    answer_text: str

    def labels(self, ignore_index: int = IGNORE_INDEX) -> list[int]:
        """Causal-LM labels aligned with `input_ids` (shift inside the model): only the answer counts."""
        return [t if self.answer_start <= i < self.answer_end else ignore_index for i, t in enumerate(self.input_ids)]

    @property
    def prompt_ids(self) -> list[int]:
        return self.input_ids[: self.answer_start]

    @property
    def answer_ids(self) -> list[int]:
        return self.input_ids[self.answer_start : self.answer_end]


def answer_content(record: Record) -> str:
    """The assistant content the model should produce for `record`."""
    return record.answer if isinstance(record.answer, str) else render_calls(record.answer)


def _content(message: dict) -> str:
    if message.get("tool_calls"):
        return render_calls([Call.from_json(c) for c in message["tool_calls"]])
    content = message.get("content") or ""
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def _type_text(schema: dict) -> str:
    if "enum" in schema:
        return "|".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"array[{_type_text(schema['items'])}]"
    fmt = schema.get("format") or ("HH:MM" if "[0-5]" in schema.get("pattern", "") else None)
    return f"{kind} ({fmt})" if fmt else str(kind)


def tool_signature(tool: dict) -> str:
    """`name(a: type, b?: type = default)  # description`: a tool's schema in few tokens."""
    fn = tool["function"]
    params = fn.get("parameters", {})
    required = set(params.get("required", []))
    args = []
    for name, schema in params.get("properties", {}).items():
        text = f"{name}{'' if name in required else '?'}: {_type_text(schema)}"
        if "default" in schema:
            text += f" = {json.dumps(schema['default'], ensure_ascii=False)}"
        args.append(text)
    description = f"  # {fn['description']}" if fn.get("description") else ""
    return f"{fn['name']}({', '.join(args)}){description}"


def fallback_prompt(messages: list[dict], tools: list[dict]) -> str:
    """The documented fallback template (see the module docstring), ending with the assistant tag."""
    system = [m for m in messages if m["role"] == "system"]
    parts = ["<|system|>\n" + (_content(system[0]) if system else "")]
    if tools:
        signatures = "\n".join(tool_signature(t) for t in tools)
        parts.append(
            "\n\nYou can call these functions:\n" + signatures + "\nAnswer with the calls as "
            "[name(param=value, ...)], or in plain text when no function helps."
        )
    for m in messages:
        if m["role"] == "system":
            continue
        parts.append(f"\n<|{m['role']}|>\n{_content(m)}" + (END if m["role"] == "assistant" else ""))
    parts.append("\n<|assistant|>\n")
    return "".join(parts)


def _template_messages(messages: list[dict]) -> list[dict]:
    """Messages as chat templates expect them: earlier tool calls as pythonic content text."""
    return [{"role": m["role"], "content": _content(m)} for m in messages]


def render_example(
    record: Record, tokenizer: PreTrainedTokenizerBase, *, use_chat_template: bool | None = None
) -> Example:
    """Token ids and answer span of `record` under `tokenizer`.

    `use_chat_template=None` uses the tokenizer's chat template when it has one, else the fallback.
    """
    answer = answer_content(record)
    if use_chat_template is None:
        use_chat_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template:
        messages = _template_messages(record.messages)
        tools = [t["function"] for t in record.tools] or None
        prompt = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
        full = tokenizer.apply_chat_template(
            messages + [{"role": "assistant", "content": answer}], tools=tools, tokenize=False
        )
        # Templates append the assistant turn after the generation prompt; if one does not, fall
        # back to the answer text and the end-of-sequence token.
        answer_text = full[len(prompt) :] if full.startswith(prompt) else answer + (tokenizer.eos_token or "")
    else:
        prompt, answer_text = fallback_prompt(record.messages, record.tools), answer + END
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer_text, add_special_tokens=False)["input_ids"]
    if not answer_ids:
        raise ValueError(f"record {record.id or '?'}: the answer renders to no tokens")
    return Example(prompt_ids + answer_ids, len(prompt_ids), len(prompt_ids) + len(answer_ids), prompt, answer_text)
