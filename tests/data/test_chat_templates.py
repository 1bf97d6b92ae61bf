"""Train = serve under the public chat templates of Qwen2.5, Llama-3.1 and Hermes-2-Pro (issue 16, item 2).

Each template (tests/fixtures/chat_templates, sources in SOURCES.md) is put on a tiny byte-level tokenizer with the
special tokens it names. A record's prompt must then be, byte for byte and id for id, what a client gets from
`apply_chat_template(messages, tools=tools, add_generation_prompt=True)` when it passes the record as it is (tools
in the function wrapper, earlier calls as `tool_calls`, tool results with `name` / `tool_call_id`); its answer must
be written in the template's call format, read back as the record's calls, and be the turn the template itself
writes for those calls at the next turn.

What no rendering can match, each pinned below: Llama-3.1 refuses a turn with several calls (a client gets an error;
rftfast writes those calls as a JSON list), and this Hermes-2-Pro revision writes several calls broken (only the
first opened with <tool_call>), refuses a tool result without a `name` and renders nothing without tools.
"""

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from jinja2.exceptions import TemplateError

from rftfast.answer import parse_calls, render_calls
from rftfast.data.chat import call_format_of, render_example
from rftfast.data.record import Call, Record
from tests.data.test_chat import importer_records
from tests.support.tiny import DEFAULT_CORPUS

TEMPLATES = Path(__file__).parents[1] / "fixtures" / "chat_templates"


@dataclass(frozen=True)
class Template:
    file: str
    call_format: str
    special_tokens: tuple[str, ...]
    eos: str
    bos: str | None = None


# The tokens each template writes, as the model's own tokenizer has them: its end of turn is the end-of-sequence.
MODELS = {
    "qwen2.5": Template("qwen2.5-7b-instruct.jinja", "hermes", ("<|im_start|>", "<|im_end|>"), eos="<|im_end|>"),
    "llama-3.1": Template(
        "llama-3.1-8b-instruct.jinja",
        "json",
        ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|eom_id|>", "<|python_tag|>"),
        eos="<|eot_id|>",
        bos="<|begin_of_text|>",
    ),
    "hermes-2-pro": Template(
        "hermes-2-pro-llama-3-8b-tool_use.jinja",
        "hermes",
        ("<|begin_of_text|>", "<|im_start|>", "<|im_end|>"),
        eos="<|im_end|>",
        bos="<|begin_of_text|>",
    ),
}


@cache
def model_tokenizer(model: str):
    """The run's byte-level BPE with `model`'s special tokens and chat template (a fresh one, not the shared tiny)."""
    from rftfast.train.model import train_tokenizer

    spec = MODELS[model]
    tokenizer = train_tokenizer(list(DEFAULT_CORPUS) * 3, 400)
    named = {"eos_token": spec.eos} | ({"bos_token": spec.bos} if spec.bos else {})
    tokenizer.add_special_tokens({"additional_special_tokens": list(spec.special_tokens), **named})
    tokenizer.chat_template = (TEMPLATES / spec.file).read_text()
    return tokenizer


def function(name: str, description: str, properties: dict, required: list[str]) -> dict:
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


STRING = {"type": "string", "description": "A value."}
WEATHER = function(
    "get_weather",
    "Current weather of a city.",
    {"city": STRING, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "description": "The unit."}},
    ["city"],
)
TIME = function("get_time", "Local time in a time zone.", {"timezone": STRING}, ["timezone"])
PLAN = function(
    "plan",
    "Plan anything.",
    {
        "a": {"type": "integer", "description": "A count."},
        "b": {"type": "number", "description": "A share."},
        "d": {"type": "array", "items": {"type": "object"}, "description": "Steps."},
        "e": STRING,
    },
    ["a"],
)
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
PARIS, OSLO = Call("get_weather", {"city": "Paris"}), Call("get_weather", {"city": "Oslo"})


def called(*calls: Call, ids: tuple[str, ...] = ()) -> dict:
    """An earlier assistant turn with `calls`, as clients pass it (OpenAI `tool_calls`, with ids where given)."""
    entries = [c.to_openai() for c in calls]
    entries = [{"id": i, **e} for i, e in zip(ids, entries)] + entries[len(ids) :]
    return {"role": "assistant", "content": "", "tool_calls": entries}


def result(name: str, content: str, call_id: str | None = None) -> dict:
    return {"role": "tool", "name": name, "content": content} | ({"tool_call_id": call_id} if call_id else {})


RECORDS = [
    Record([{"role": "user", "content": "Hi!"}], [], "Hello! How can I help?", "text-single-turn"),
    Record([SYSTEM, {"role": "user", "content": "Weather in Paris?"}], [WEATHER, TIME], [PARIS], "one-call"),
    Record([SYSTEM, {"role": "user", "content": "Weather in Paris and Oslo?"}], [WEATHER], [PARIS, OSLO], "two-calls"),
    Record(
        [SYSTEM, {"role": "user", "content": "Weather in Paris?"}, called(PARIS, ids=("call_1",))]
        + [result("get_weather", '{"temp": 4, "unit": "celsius"}', "call_1")],
        [WEATHER],
        "It is 4 °C in Paris.",
        "text-after-a-tool-result",
    ),
    Record(
        [{"role": "user", "content": "Weather in Paris, then the time there?"}, called(PARIS)]
        + [result("get_weather", '{"temp": 4}')],
        [WEATHER, TIME],
        [Call("get_time", {"timezone": "Europe/Paris"})],
        "call-after-a-tool-result",
    ),
    Record(
        [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! What can I do?"}]
        + [{"role": "user", "content": "Weather in Oslo, in fahrenheit?"}],
        [WEATHER],
        [Call("get_weather", {"city": "Oslo", "unit": "fahrenheit"})],
        "multi-turn",
    ),
    Record(
        [{"role": "user", "content": 'Plan "it" — ünïcode, 3 steps'}],
        [PLAN],
        [Call("plan", {"a": 3, "b": 0.5, "d": [{"k": None, "ok": True}, {"t": "x\ty"}], "e": 'say "hi"\n'})],
        "nested-values-no-system",
    ),
    Record(
        [SYSTEM, {"role": "user", "content": "Weather in Paris and Oslo?"}, called(PARIS, OSLO, ids=("a1", "b2"))]
        + [result("get_weather", '{"temp": 4}', "a1"), result("get_weather", '{"temp": -2}', "b2")],
        [WEATHER],
        "Paris: 4 °C, Oslo: -2 °C.",
        "two-earlier-calls",
    ),
    Record([SYSTEM, {"role": "user", "content": "Tell me a joke."}], [WEATHER], "Why did the...", "no-call-with-tools"),
]


def cases() -> list[Record]:
    return RECORDS + importer_records()


def served_prompt(tokenizer, record: Record, **kwargs) -> str:
    """What a client gets for `record` at inference: its messages and tools as they are (no tools is None)."""
    return tokenizer.apply_chat_template(
        record.messages, tools=record.tools or None, add_generation_prompt=True, tokenize=False, **kwargs
    )


def refusals(model: str, record: Record) -> bool:
    """Whether `model`'s template refuses `record`'s conversation as a client passes it (see the module docstring).

    Hermes-2-Pro's `tool_use` template also renders nothing without tools (it loops over them): a client without
    tools gets the model's default template, which is not under test here.
    """
    earlier_calls = [len(m.get("tool_calls") or []) for m in record.messages]
    unnamed_results = any(m["role"] == "tool" and not m.get("name") for m in record.messages)
    if model == "hermes-2-pro":
        return unnamed_results or not record.tools
    return model == "llama-3.1" and max(earlier_calls) > 1


@pytest.mark.parametrize("model", list(MODELS))
def test_call_format_is_read_from_the_template(model):
    assert call_format_of(model_tokenizer(model)) == MODELS[model].call_format


@pytest.mark.parametrize("model", list(MODELS))
def test_the_prompt_is_what_the_template_serves(model):
    tokenizer, matched = model_tokenizer(model), 0
    for record in cases():
        if refusals(model, record):
            with pytest.raises((TemplateError, TypeError)):
                served_prompt(tokenizer, record)
            continue
        example = render_example(record, tokenizer)
        assert example.prompt_text == served_prompt(tokenizer, record), record.id
        ids = tokenizer.apply_chat_template(record.messages, tools=record.tools or None, add_generation_prompt=True)
        assert example.prompt_ids == list(ids["input_ids"] if hasattr(ids, "keys") else ids), record.id
        matched += 1
    assert matched >= 8


@pytest.mark.parametrize("model", list(MODELS))
def test_the_answer_is_in_the_template_call_format(model):
    tokenizer, spec = model_tokenizer(model), MODELS[model]
    for record in cases():
        if model == "hermes-2-pro" and refusals(model, record):
            with pytest.raises((ValueError, TypeError)):  # ValueError: "the chat template refuses it"
                render_example(record, tokenizer)
            continue
        example = render_example(record, tokenizer)
        assert example.answer_text.endswith(spec.eos), record.id  # the end of turn is trained; nothing after it
        assert tokenizer.decode(example.answer_ids) == example.answer_text, record.id
        content = example.answer_text.removesuffix(spec.eos)
        if record.is_call:
            assert parse_calls(content, spec.call_format) == record.answer, record.id
        else:
            assert content.strip() == record.answer.strip(), record.id


@pytest.mark.parametrize("model", list(MODELS))
def test_the_answer_is_the_turn_the_template_writes_for_it(model):
    """At the next turn the model sees its answer exactly as it was trained to write it."""
    tokenizer = model_tokenizer(model)
    for record in cases():
        if refusals(model, record) or (model != "qwen2.5" and record.is_call and len(record.answer) > 1):
            continue  # refused, or several calls: Llama-3.1 refuses them, this Hermes-2-Pro writes them broken
        example = render_example(record, tokenizer)
        messages = record.messages + [record.answer_message()]
        following = tokenizer.apply_chat_template(messages, tools=record.tools or None, tokenize=False)
        assert following.startswith(example.prompt_text + example.answer_text), record.id


# The answers of "one-call" and "two-calls", pinned per template: each template's own JSON where it writes one.
ONE_CALL = {
    "qwen2.5": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
    "llama-3.1": '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>',
    "hermes-2-pro": '<tool_call>\n{ "arguments": {"city": "Paris"}, "name": "get_weather"}\n</tool_call> <|im_end|>',
}
TWO_CALLS = {
    "qwen2.5": '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>',
    # The template refuses two calls in a turn: rftfast.answer's JSON list, which Llama-3.1 never saw.
    "llama-3.1": render_calls([PARIS, OSLO], "json") + "<|eot_id|>",
    # The template writes the second call without its <tool_call>: rftfast.answer's Hermes blocks instead.
    "hermes-2-pro": render_calls([PARIS, OSLO], "hermes") + "<|im_end|>",
}


@pytest.mark.parametrize("model", list(MODELS))
def test_pinned_answers(model):
    tokenizer = model_tokenizer(model)
    one, two = (next(r for r in RECORDS if r.id == name) for name in ("one-call", "two-calls"))
    assert render_example(one, tokenizer).answer_text == ONE_CALL[model]
    assert render_example(two, tokenizer).answer_text == TWO_CALLS[model]


def test_llama_earlier_calls_it_refuses_are_written_as_json_text():
    tokenizer = model_tokenizer("llama-3.1")
    record = next(r for r in RECORDS if r.id == "two-earlier-calls")
    with pytest.raises(TemplateError, match="single tool-calls"):
        served_prompt(tokenizer, record)
    prompt = render_example(record, tokenizer).prompt_text
    assert "<|start_header_id|>assistant<|end_header_id|>\n\n" + render_calls([PARIS, OSLO], "json") in prompt


def test_llama_template_kwargs_reach_the_template():
    """Llama-3.1's documented kwargs: a date (default "26 Jul 2024") and the tools in the system turn."""
    tokenizer = model_tokenizer("llama-3.1")
    record = next(r for r in RECORDS if r.id == "one-call")
    assert "Today Date: 26 Jul 2024\n" in render_example(record, tokenizer).prompt_text
    for kwargs in ({"date_string": "23 Nov 2026"}, {"date_string": "23 Nov 2026", "tools_in_user_message": False}):
        example = render_example(record, tokenizer, chat_template_kwargs=kwargs)
        assert example.prompt_text == served_prompt(tokenizer, record, **kwargs)
        assert "Today Date: 23 Nov 2026\n" in example.prompt_text
    system_turn = example.prompt_text.split("<|eot_id|>")[0]
    assert '"name": "get_weather"' in system_turn  # tools_in_user_message=False: the tools are in the system turn


def test_an_explicit_call_format_overrides_the_template():
    example = render_example(RECORDS[1], model_tokenizer("qwen2.5"), call_format="pythonic")
    assert example.answer_text == '[get_weather(city="Paris")]<|im_end|>'
