"""Records to token ids: the fallback template, a real chat template with tools, and the answer span."""

from rftfast.data.chat import END, answer_content, fallback_prompt, render_example
from rftfast.data.record import Call, Record
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

TEMPLATE = (
    "{% if tools %}<|system|>TOOLS:{% for t in tools %}{{ t['name'] }};{% endfor %}\n{% endif %}"
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
