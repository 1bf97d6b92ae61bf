"""Records to token ids for training and search, with the token span of the answer.

Train = serve. With a tokenizer that has a chat template, the prompt is exactly what a client gets from
`tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True)` when it passes the record the
OpenAI way (`chat_template_messages`): tools in the function wrapper (`{"type": "function", "function": ...}`),
earlier calls as assistant `tool_calls` with dict arguments, tool results as `tool` messages with their `name`
and `tool_call_id`. The answer is the assistant turn the template writes after that prompt, up to and including
the end-of-sequence token (generation stops there), with the calls in the template's own call format
(`call_format_of`, or `render_example`'s `call_format`):

- "hermes" (Qwen2.5, Hermes-2-Pro): `<tool_call>\n{"name": ..., "arguments": ...}\n</tool_call>` blocks;
- "json" (Llama-3.1): `{"name": ..., "parameters": ...}`;
- "pythonic" otherwise: `[get_weather(city="Paris")]`, as BFCL and ToolACE write answers.

In the JSON and Hermes formats the template writes the answer's calls itself (its key names, key order and
spacing are what the model must learn to write); where it cannot (Llama-3.1 takes one call per turn), the calls
are written by `rftfast.answer.render_calls` in that format as the turn's content. Pythonic calls are always the
package's own text (`answer_content`): the text the search cuts into steps and the judge reads, which the
fallback template below also writes.

Without a chat template, the fallback template is used (the locally trained tokenizer carries it as Jinja,
`rftfast.train.model.FALLBACK_CHAT_TEMPLATE`, which renders the same ids):

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
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rftfast.answer import FORMATS, parse_calls, render_calls
from rftfast.data.record import TOOL_LINKS, Call, ParseError, Record

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

END = "<|end|>"
IGNORE_INDEX = -100
# What in a chat template's source says which call format it asks for (`call_format_of`): Qwen2.5's and
# Hermes-2-Pro's instructions and call rendering use the Hermes tag; Llama-3.1's write the JSON key "parameters"
# (in quotes, as no pythonic template's own text does: their tool schemas are written at render time).
HERMES_TEMPLATE_MARK = "<tool_call>"
JSON_TEMPLATE_MARK = '"parameters"'


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


def answer_content(record: Record, call_format: str = "pythonic") -> str:
    """The assistant content the model should produce for `record`: its text, or its calls in `call_format`."""
    return record.answer if isinstance(record.answer, str) else render_calls(record.answer, call_format)


def _text(message: dict) -> str:
    content = message.get("content") or ""
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


def _content(message: dict) -> str:
    """A message's content as the fallback template shows it: earlier calls in pythonic form."""
    if message.get("tool_calls"):
        return render_calls([Call.from_json(c) for c in message["tool_calls"]])
    return _text(message)


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


def call_format_of(tokenizer: PreTrainedTokenizerBase) -> str:
    """The call format `tokenizer`'s chat template asks for: "hermes", "json" or "pythonic".

    A template that holds the `<tool_call>` tag is Hermes (Qwen2.5, Hermes-2-Pro); one that writes the key
    `"parameters"` is Llama-3.1's JSON; any other, the fallback template included, and no template, pythonic.
    """
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, Mapping):  # named templates: apply_chat_template renders "tool_use" when given tools
        template = template.get("tool_use") or template.get("default")
    template = template if isinstance(template, str) else ""
    if HERMES_TEMPLATE_MARK in template:
        return "hermes"
    if JSON_TEMPLATE_MARK in template:
        return "json"
    return "pythonic"


def chat_template_messages(messages: list[dict], calls_written_in: str | None = None) -> list[dict]:
    """`messages` as OpenAI-style clients pass them to a chat template: contents as strings, earlier calls as
    assistant `tool_calls` (with their ids, arguments as dicts), tool results with their `name` / `tool_call_id`.

    `calls_written_in` (a call format) writes earlier calls as the assistant's content in that format instead, for
    a template that refuses some `tool_calls` (Llama-3.1 takes one call per turn). Only messages that carry calls
    get a `tool_calls` key: templates test for the key, not for an empty list.
    """
    converted = []
    for message in messages:
        entry = {"role": message["role"], "content": _text(message)}
        entry.update({key: message[key] for key in TOOL_LINKS if message.get(key) is not None})
        if message.get("tool_calls"):
            if calls_written_in:
                entry["content"] = render_calls([Call.from_json(c) for c in message["tool_calls"]], calls_written_in)
            else:
                entry["tool_calls"] = [dict(call) for call in message["tool_calls"]]
        converted.append(entry)
    return converted


def render_example(
    record: Record,
    tokenizer: PreTrainedTokenizerBase,
    *,
    use_chat_template: bool | None = None,
    call_format: str | None = None,
    chat_template_kwargs: Mapping[str, Any] | None = None,
) -> Example:
    """Token ids and answer span of `record` under `tokenizer` (see the module docstring).

    `use_chat_template=None` uses the tokenizer's chat template when it has one, else the fallback.
    `call_format=None` takes the template's own (`call_format_of`); the fallback template's is pythonic.
    `chat_template_kwargs` go to every `apply_chat_template` call, as a server passes them to the template:
    Llama-3.1's `date_string` or `tools_in_user_message`, for instance.
    """
    if call_format is not None and call_format not in FORMATS:
        raise ValueError(f"call_format: expected one of {FORMATS} or None, got {call_format!r}")
    if use_chat_template is None:
        use_chat_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template:
        prompt, answer_text = _render_through_template(
            record,
            tokenizer,
            call_format=call_format or call_format_of(tokenizer),
            template_kwargs=dict(chat_template_kwargs or {}),
        )
    else:
        if call_format not in (None, "pythonic"):
            raise ValueError(f"call_format={call_format!r}: the fallback template asks for pythonic calls")
        prompt, answer_text = fallback_prompt(record.messages, record.tools), answer_content(record) + END
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer_text, add_special_tokens=False)["input_ids"]
    if not answer_ids:
        raise ValueError(f"record {record.id or '?'}: the answer renders to no tokens")
    return Example(prompt_ids + answer_ids, len(prompt_ids), len(prompt_ids) + len(answer_ids), prompt, answer_text)


def _render_through_template(
    record: Record, tokenizer: PreTrainedTokenizerBase, *, call_format: str, template_kwargs: dict
) -> tuple[str, str]:
    """(prompt, answer text) of `record` through `tokenizer`'s chat template."""
    from jinja2.exceptions import TemplateError

    # No tools is None, as a server passes it: Llama-3.1's template tests `tools is not none`.
    tools = record.tools or None

    def render(messages: list[dict], generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(
            messages, tools=tools, add_generation_prompt=generation_prompt, tokenize=False, **template_kwargs
        )

    history = chat_template_messages(record.messages)
    try:
        try:
            prompt = render(history, True)
        except TemplateError:
            if not any(m.get("tool_calls") for m in record.messages):
                raise
            history = chat_template_messages(record.messages, calls_written_in=call_format)
            prompt = render(history, True)
        eos = tokenizer.eos_token or ""
        turn = None
        if record.is_call and call_format != "pythonic":
            try:
                turn = _assistant_turn(render, history, record.answer_message(), prompt=prompt, eos=eos)
            except TemplateError:  # Llama-3.1: several calls in one turn
                turn = None
            if turn is not None and not _reads_back(turn.removesuffix(eos), call_format, record.answer):
                turn = None  # a template that writes calls in another format than the one asked for
        if turn is None:
            content = answer_content(record, call_format)
            turn = _assistant_turn(render, history, {"role": "assistant", "content": content}, prompt=prompt, eos=eos)
            turn = content + eos if turn is None else turn
    except TemplateError as e:
        raise ValueError(f"record {record.id or '?'}: the chat template refuses it: {e}") from e
    return prompt, turn


def _assistant_turn(
    render: Callable[[list[dict], bool], str], history: list[dict], message: dict, *, prompt: str, eos: str
) -> str | None:
    """What the template writes for `message` after `prompt` (`history` with the generation prompt), up to and
    including the first `eos`; None where the turn cannot be found."""
    full = render(history + [message], False)
    if full.startswith(prompt):
        turn = full[len(prompt) :]
    else:
        # Some templates close the last message differently when another follows it (a later Hermes-2-Pro
        # revision, after a tool result): find the turn by the generation prompt's own text, past the point
        # where the two renderings part.
        without_opener = render(history, False)
        opener = prompt[len(without_opener) :] if prompt.startswith(without_opener) else ""
        parted = len(os.path.commonprefix([prompt, full]))
        start = full.find(opener, max(parted - len(opener), 0)) if opener else -1
        if start < 0:
            return None
        turn = full[start + len(opener) :]
    # Generation stops at the end token: what a template writes after it (a newline) is never generated.
    if eos and eos in turn:
        turn = turn[: turn.index(eos) + len(eos)]
    return turn


def _reads_back(content: str, call_format: str, calls: list[Call]) -> bool:
    try:
        return parse_calls(content, call_format) == calls
    except ParseError:
        return False
