"""Records to token ids: the fallback template, a real chat template with tools, and the answer span.

The public templates of Qwen2.5, Llama-3.1 and Hermes-2-Pro are tested in test_chat_templates.py.
"""

import pytest

from rftfast.data.chat import (
    END,
    answer_content,
    call_format_of,
    chat_template_messages,
    fallback_prompt,
    render_example,
)
from rftfast.data.importers import import_glaive, import_hermes, import_toolace, import_xlam
from rftfast.data.record import Call, Record
from rftfast.data.toolworld import generate
from tests.support.tiny import tiny_tokenizer

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
RECORD = Record(
    [{"role": "system", "content": "Today is 2026-11-23."}, {"role": "user", "content": "Weather in Paris and Oslo?"}],
    TOOLS,
    [Call("get_weather", {"city": "Paris"}), Call("get_weather", {"city": "Oslo"})],
    "r1",
)

# Tools come in the OpenAI function wrapper, as clients pass them.
TEMPLATE = (
    "{% if tools %}<|system|>TOOLS:{% for t in tools %}{{ t['function']['name'] }};{% endfor %}\n{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% if m['role'] == 'assistant' %}<|end|>{% endif %}"
    "\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_fallback_template_and_answer_span():
    tok = tiny_tokenizer()
    ex = render_example(RECORD, tok, use_chat_template=False)
    assert ex.answer_text == '[get_weather(city="Paris"), get_weather(city="Oslo")]' + END
    assert tok.decode(ex.answer_ids) == ex.answer_text
    assert tok.decode(ex.prompt_ids) == ex.prompt_text
    assert ex.prompt_text.endswith("<|assistant|>\n")
    assert "get_weather(city: string)  # Weather of a city" in ex.prompt_text
    assert "Weather in Paris and Oslo?" in ex.prompt_text
    labels = ex.labels()
    assert labels[: ex.answer_start] == [-100] * ex.answer_start
    assert labels[ex.answer_start :] == ex.answer_ids


def test_earlier_tool_calls_render_as_pythonic_text():
    history = RECORD.messages + [
        {"role": "assistant", "content": "", "tool_calls": [c.to_openai() for c in RECORD.answer]},
        {"role": "tool", "content": '{"temp": 4}'},
    ]
    prompt = fallback_prompt(history, TOOLS)
    assert '<|assistant|>\n[get_weather(city="Paris"), get_weather(city="Oslo")]<|end|>' in prompt
    assert '<|tool|>\n{"temp": 4}' in prompt


def test_chat_template_with_tools():
    tok = tiny_tokenizer()
    own, tok.chat_template = tok.chat_template, TEMPLATE  # the cached tokenizer gets its own template back
    try:
        ex = render_example(RECORD, tok)
    finally:
        tok.chat_template = own
    assert ex.prompt_text.startswith("<|system|>TOOLS:get_weather;")
    assert ex.prompt_text.endswith("<|assistant|>")
    assert ex.answer_text == answer_content(RECORD) + "<|end|>"  # transformers trims the newline after a block


def test_text_answers():
    record = Record([{"role": "user", "content": "Hi!"}], TOOLS, "Hello! How can I help?")
    ex = render_example(record, tiny_tokenizer(), use_chat_template=False)
    assert ex.answer_text == "Hello! How can I help?" + END


def test_tool_signature_keeps_optional_enum_default_and_format():
    from rftfast.data.chat import tool_signature

    tool = {
        "type": "function",
        "function": {
            "name": "get_directions",
            "description": "Directions.",
            "parameters": {
                "type": "object",
                "required": ["origin", "date"],
                "properties": {
                    "origin": {"type": "string"},
                    "date": {"type": "string", "format": "date"},
                    "mode": {"type": "string", "enum": ["driving", "walking"], "default": "driving"},
                    "stops": {"type": "array", "items": {"type": "integer"}},
                },
            },
        },
    }
    assert tool_signature(tool) == (
        'get_directions(origin: string, date: string (date), mode?: "driving"|"walking"'
        ' = "driving", stops?: array[integer])  # Directions.'
    )


# ----------------------------------------------------------------------------- the locally trained tokenizer


def importer_records() -> list[Record]:
    """The importer fixtures of tests/data, imported: earlier calls, tool results with and without names, systems."""
    from tests.data.test_importers import GLAIVE, HERMES, TOOLACE, XLAM
    from tests.data.test_real_shapes import HERMES_2_PRO_PROMPT, HERMES_EXTRACTION, HERMES_REAL, HERMES_SINGLE_TURN

    records = import_toolace(TOOLACE) + import_glaive(GLAIVE) + import_xlam(XLAM) + import_hermes(HERMES)
    for raw in (HERMES_SINGLE_TURN, HERMES_2_PRO_PROMPT, HERMES_EXTRACTION, *HERMES_REAL.values()):
        records += import_hermes(raw)
    return records


# Earlier calls and answers with every kind of value the pythonic form writes (tabs, quotes, backslashes,
# unicode, floats in both notations, None, nesting), a tool message with both links, and an empty user turn.
AWKWARD = Record(
    [
        {"role": "system", "content": "Today is 2026-11-23."},
        {"role": "user", "content": 'Plan "it"\nnow — ünïcode'},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    **Call("plan", {"a": 1, "b": 2.5, "c": None, "d": [True, {"k": "v\t\\"}]}).to_openai(),
                },
                Call("plan", {"e": 1e-05, "f": "x"}).to_openai(),
            ],
        },
        {"role": "tool", "name": "plan", "tool_call_id": "call_1", "content": '{"ok": true}'},
        {"role": "tool", "name": "plan", "content": "done"},
        {"role": "user", "content": ""},
    ],
    TOOLS,
    [Call("get_weather", {"city": 'Zürich "centre"', "days": [1, 2.0], "hourly": False, "unit": None})],
    "awkward",
)


def run_tokenizer(records: list[Record]):
    """The run's own tokenizer, trained on the records as `stage_data` trains it (it carries the fallback template)."""
    from rftfast.train.model import FALLBACK_CHAT_TEMPLATE, ModelConfig, train_tokenizer

    tokenizer = train_tokenizer(
        [fallback_prompt(r.messages, r.tools) + answer_content(r) for r in records], ModelConfig().vocab_size
    )
    assert tokenizer.chat_template == FALLBACK_CHAT_TEMPLATE
    return tokenizer


def test_the_local_tokenizer_renders_the_same_ids_as_the_fallback_prompt():
    """Train = serve changes nothing for the default run: through the fallback template (earlier calls now passed as
    `tool_calls`, tools wrapped), every record renders exactly the ids and answer span `fallback_prompt` gives."""
    records = generate(200, seed=0) + importer_records() + [AWKWARD, RECORD]
    assert any(m.get("tool_calls") for r in records for m in r.messages)
    for tokenizer in (tiny_tokenizer(), run_tokenizer(records)):
        assert call_format_of(tokenizer) == "pythonic"
        for record in records:
            prompt, answer = fallback_prompt(record.messages, record.tools), answer_content(record) + END
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
            example = render_example(record, tokenizer)
            assert (example.prompt_text, example.answer_text) == (prompt, answer), record.id
            assert example.input_ids == prompt_ids + answer_ids, record.id
            assert (example.answer_start, example.answer_end) == (len(prompt_ids), len(prompt_ids) + len(answer_ids))


def test_an_unusual_character_in_an_earlier_call_renders_as_the_template_serves_it():
    """The one place the template and `fallback_prompt` part: a character `tojson` and `quote_string` escape
    differently (here a backspace) in an earlier call. The prompt is then what the checkpoint's template gives a
    client that passes the call as `tool_calls`; the answer stays the package's pythonic text."""
    call = Call("get_weather", {"city": "Paris\b"})
    record = Record(
        RECORD.messages + [{"role": "assistant", "content": "", "tool_calls": [call.to_openai()]}],
        TOOLS,
        [call],
    )
    tokenizer = tiny_tokenizer()
    example = render_example(record, tokenizer)
    served = tokenizer.apply_chat_template(record.messages, tools=TOOLS, add_generation_prompt=True, tokenize=False)
    assert example.prompt_text == served
    assert '<|assistant|>\n[get_weather(city="Paris\\b")]<|end|>' in example.prompt_text  # tojson's escape
    assert '[get_weather(city="Paris\\u0008")]' in fallback_prompt(record.messages, TOOLS)  # quote_string's
    assert example.answer_text == '[get_weather(city="Paris\\u0008")]' + END


def test_call_format_of_templates():
    tokenizer = tiny_tokenizer()
    assert call_format_of(tokenizer) == "pythonic"

    class Named:
        chat_template = {"default": "{{ messages }}", "tool_use": "<tool_call>{{ tools }}</tool_call>"}

    class Llama:
        chat_template = """{{- '"parameters": ' }}{{- tool_call.arguments | tojson }}"""

    class Bare:
        chat_template = None

    assert call_format_of(Named()) == "hermes"
    assert call_format_of(Llama()) == "json"
    assert call_format_of(Bare()) == "pythonic"


def test_the_fallback_template_writes_pythonic_calls_only():
    with pytest.raises(ValueError, match="asks for pythonic calls"):
        render_example(RECORD, tiny_tokenizer(), use_chat_template=False, call_format="hermes")
    with pytest.raises(ValueError, match="call_format"):
        render_example(RECORD, tiny_tokenizer(), call_format="xml")


def test_an_explicit_call_format_writes_the_answer_in_it():
    tokenizer = tiny_tokenizer()
    own, tokenizer.chat_template = tokenizer.chat_template, TEMPLATE
    try:
        example = render_example(RECORD, tokenizer, call_format="hermes")
    finally:
        tokenizer.chat_template = own
    assert example.answer_text == answer_content(RECORD, "hermes") + "<|end|>"
    assert example.answer_text.startswith('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}')


def test_chat_template_messages_are_what_clients_pass():
    messages = chat_template_messages(AWKWARD.messages)
    assert messages[2] == {"role": "assistant", "content": "", "tool_calls": AWKWARD.messages[2]["tool_calls"]}
    assert messages[3] == {"role": "tool", "content": '{"ok": true}', "name": "plan", "tool_call_id": "call_1"}
    assert "tool_calls" not in messages[1] and "tool_calls" not in messages[5]
    as_text = chat_template_messages(AWKWARD.messages, calls_written_in="json")[2]
    assert as_text == {
        "role": "assistant",
        "content": '[{"name": "plan", "arguments": {"a": 1, "b": 2.5, "c": null, "d": [true, {"k": "v\\t\\\\"}]}}, '
        '{"name": "plan", "arguments": {"e": 1e-05, "f": "x"}}]',
    }


def test_a_template_that_closes_the_last_message_differently():
    """Where the prompt is no prefix of the conversation with the answer (the last message is closed otherwise when
    another follows it), the answer is found after the generation prompt's own text."""
    template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% if loop.last %}.{% endif %}"
        "{% if m['role'] == 'assistant' %}<|end|>{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    record = Record([{"role": "user", "content": "Hi!"}], [], "Hello!")
    tokenizer = tiny_tokenizer()
    own, tokenizer.chat_template = tokenizer.chat_template, template
    try:
        example = render_example(record, tokenizer)
    finally:
        tokenizer.chat_template = own
    assert example.prompt_text == "<|user|>Hi!.<|assistant|>"
    assert example.answer_text == "Hello!.<|end|>"  # the template's own closing, up to the end token
