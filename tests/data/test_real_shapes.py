"""Importers on records shaped like the public datasets (issue 16, item 3): each case failed before its fix.

The Hermes records follow NousResearch/hermes-function-calling-v1 (its dataset card's examples, shortened):
the standard sentences of its system prompts are kept word for word, because the first of them, "...within
<tools> </tools> XML tags", is what the tool-list pattern used to match.
"""

import json
import os
import re

import pytest

from rftfast.cli import main
from rftfast.data.chat import fallback_prompt
from rftfast.data.convert import convert_file, import_file
from rftfast.data.importers import import_canonical, import_glaive, import_hermes, import_toolace
from rftfast.data.io import read_records, write_json_atomic, write_records
from rftfast.data.record import Call, Record, RecordError
from tests.data.test_importers import GLAIVE, TOOLACE, bfcl_directory

# ----------------------------------------------------------------------------- Hermes, as the dataset writes it

# func-calling.json and func-calling-singleturn.json: the list on its own lines between <tools> tags.
HERMES_INTRO = (
    "You are a function calling AI model. You are provided with function signatures within <tools> </tools> XML "
    "tags. You may call one or more functions to assist with the user query. Don't make assumptions about what "
    "values to plug into functions.\n"
)
HERMES_CALL_FORMAT = (
    "\nFor each function call return a json object with function name and arguments within <tool_call> "
    "</tool_call> tags with the following schema:\n<tool_call>\n{'arguments': <args-dict>, 'name': "
    "<function-name>}\n</tool_call>\n"
)
SEARCH_FLIGHTS = (
    "{'type': 'function', 'function': {'name': 'search_flights', 'description': 'Searches for flights based on "
    "departure and destination cities, dates, class, and other preferences.', 'parameters': {'type': 'object', "
    "'properties': {'departure_city': {'type': 'string', 'description': 'The city from which the flight will "
    "depart.'}, 'destination_city': {'type': 'string', 'description': 'The destination city for the flight.'}, "
    "'departure_date': {'type': 'string', 'description': 'The departure date for the flight.', 'format': "
    "'date'}, 'class': {'type': 'string', 'description': 'The class of the flight ticket.', 'enum': ['economy', "
    "'business', 'first']}, 'flexible_cancellation': {'type': 'boolean', 'description': 'Indicates if the "
    "search should filter for flights with flexible cancellation policies.'}}, 'required': ['departure_city', "
    "'destination_city', 'departure_date', 'class']}}}"
)
CAMERA_FEED = (
    "{'type': 'function', 'function': {'name': 'get_camera_live_feed', 'description': 'Retrieves the live feed "
    "from a specified security camera.', 'parameters': {'type': 'object', 'properties': {'camera_id': {'type': "
    "'string', 'description': 'The unique identifier for the camera.'}, 'stream_quality': {'type': 'string', "
    "'description': 'The desired quality of the live stream.', 'enum': ['720p', '1080p', '4k']}}, 'required': "
    "['camera_id']}}}"
)
HERMES_MULTI_TURN = {  # func-calling.json: a call, its tool response, the answer in text
    "id": "753d8365-0e54-43b1-9514-3f9b819fd31c",
    "conversations": [
        {"from": "system", "value": HERMES_INTRO + "<tools>\n[" + SEARCH_FLIGHTS + "]\n</tools>" + HERMES_CALL_FORMAT},
        {
            "from": "human",
            "value": "I'm planning a kayaking trip and looking to book flights from Los Angeles to Auckland. My "
            "departure is scheduled for July 10th, 2023. I would prefer to travel in economy class with flexible "
            "cancellation. Could you please search for flights that meet these criteria?",
        },
        {
            "from": "gpt",
            "value": "<tool_call>\n{'arguments': {'departure_city': 'Los Angeles', 'destination_city': 'Auckland', "
            "'departure_date': '2023-07-10', 'class': 'economy', 'flexible_cancellation': True}, 'name': "
            "'search_flights'}\n</tool_call>\n",
        },
        {
            "from": "tool",
            "value": '<tool_response>\n{"name": "search_flights", "content": {"flights": [{"flight_number": '
            '"AA118", "airline": "American Airlines", "price": "$950", "flexible_cancellation": true}]}}\n'
            "</tool_response>\n",
        },
        {"from": "gpt", "value": "Here is a flight with flexible cancellation: American Airlines AA118, $950."},
    ],
    "category": "E-commerce Platforms",
    "subcategory": "Kayak",
    "task": "Flight Search",
}
HERMES_SINGLE_TURN = {  # func-calling-singleturn.json: two tools, two calls in one turn
    "id": "85f6c398-69c7-4df2-aed1-29d614a93a26",
    "conversations": [
        {
            "from": "system",
            "value": HERMES_INTRO
            + "<tools>\n["
            + CAMERA_FEED
            + ", "
            + SEARCH_FLIGHTS
            + "]\n</tools>"
            + HERMES_CALL_FORMAT,
        },
        {"from": "human", "value": "Show me the front door camera in 1080p and the garage camera in 4k."},
        {
            "from": "gpt",
            "value": "<tool_call>\n{'arguments': {'camera_id': 'front_door', 'stream_quality': '1080p'}, 'name': "
            "'get_camera_live_feed'}\n</tool_call>\n<tool_call>\n{'arguments': {'camera_id': 'garage', "
            "'stream_quality': '4k'}, 'name': 'get_camera_live_feed'}\n</tool_call>\n",
        },
    ],
    "category": "IoT and Home Automation",
    "subcategory": "Security Camera Management",
    "task": "View and Manage Security Camera Feeds",
}
# The card's Hermes-2-Pro prompt format, the tools one object after another as its prompter writes them.
HERMES_2_PRO_PROMPT = {
    "id": "hermes-2-pro-prompt",
    "conversations": [
        {
            "from": "system",
            "value": "You are a function calling AI model. You are provided with function signatures within "
            "<tools></tools> XML tags. You may call one or more functions to assist with the user query. Don't make "
            "assumptions about what values to plug into functions. Here are the available tools: <tools> "
            + CAMERA_FEED
            + " "
            + SEARCH_FLIGHTS
            + "  </tools> Use the following pydantic model json schema for each tool call you will make: {'title': "
            "'FunctionCall', 'type': 'object', 'properties': {'arguments': {'title': 'Arguments', 'type': 'object'}, "
            "'name': {'title': 'Name', 'type': 'string'}}, 'required': ['arguments', 'name']} For each function call "
            "return a json object with function name and arguments within <tool_call></tool_call> XML tags as "
            "follows:\n<tool_call>\n{'arguments': <args-dict>, 'name': <function-name>}\n</tool_call>",
        },
        {"from": "human", "value": "Show me the porch camera."},
        {
            "from": "gpt",
            "value": "<tool_call>\n{'arguments': {'camera_id': 'porch'}, 'name': 'get_camera_live_feed'}\n</tool_call>",
        },
    ],
}
HERMES_EXTRACTION = {  # json-mode-agentic.json's structured extraction: "\n" written as backslash-n around the call
    "id": "afba1f0c-3212-467d-8594-d72a06da4d05",
    "conversations": [
        {
            "from": "system",
            "value": "You are an expert structured information extraction AI model. You will be provided with "
            "documents to extract information from. You are also provided with the json schema to output extracted "
            "information in the function signatures within XML tags <tools></tools>. Don't make assumptions about "
            'what values to plug into json schema. \n<tools>\n[{"type": "function", "function": {"name": '
            '"ExpertQAExtractor", "description": "Extracts a list of questions that ask how a concept or '
            'information from the document can be applied to a real-world situation.", "parameters": {"type": '
            '"object", "properties": {"application_questions": {"type": "array", "items": {"type": "string"}}}, '
            '"required": ["application_questions"]}}}]\n</tools>\nFor each extraction function call return a json '
            "object with function name and arguments followed by a <tool_call> tag with the following schema:\n"
            "<tool_call>\n{'arguments': <args-dict>, 'name': <function-name>}\n</tool_call>",
        },
        {
            "from": "human",
            "value": "Can you help me extract queries from the following passage <passage> A DAG. </passage>",
        },
        {
            "from": "gpt",
            "value": '<tool_call>\\n{"arguments": {"application_questions": ["Where would a DAG help plan a '
            'project?"]}, "name": "ExpertQAExtractor"}\\n</tool_call>',
        },
    ],
    "category": "Information Extraction",
    "subcategory": "Json Schema",
    "task": "Structured json schema extaction with function calling",
}
HERMES_REAL = {
    "multi_turn": HERMES_MULTI_TURN,
    "single_turn": HERMES_SINGLE_TURN,
    "hermes_2_pro_prompt": HERMES_2_PRO_PROMPT,
    "extraction": HERMES_EXTRACTION,
}


@pytest.mark.parametrize("shape", list(HERMES_REAL))
def test_hermes_records_of_the_real_shapes_import(shape):
    records = import_hermes(HERMES_REAL[shape])
    first = records[0]
    assert first.is_call and first.tool_names
    assert {c.name for c in first.answer} <= set(first.tool_names)
    if shape == "single_turn":
        assert first.tool_names == ["get_camera_live_feed", "search_flights"]
        assert [c.arguments["camera_id"] for c in first.answer] == ["front_door", "garage"]
    if shape == "hermes_2_pro_prompt":
        assert first.tool_names == ["get_camera_live_feed", "search_flights"]
    if shape == "extraction":
        assert first.answer == [
            Call("ExpertQAExtractor", {"application_questions": ["Where would a DAG help plan a project?"]})
        ]


@pytest.mark.parametrize("shape", list(HERMES_REAL))
def test_hermes_system_prompts_lose_their_tool_list_and_keep_the_rest(shape):
    raw = HERMES_REAL[shape]
    record = import_hermes(raw)[0]
    system = record.messages[0]
    assert system["role"] == "system"
    for name in record.tool_names:
        assert name not in system["content"]
    assert "'type': 'function'" not in system["content"] and '"type": "function"' not in system["content"]
    first_sentence = raw["conversations"][0]["value"].split(". ")[0]
    assert system["content"].startswith(first_sentence)  # what is not the list stays
    # Rendered, each tool appears once: in the template's own list.
    prompt = fallback_prompt(record.messages, record.tools)
    for name in record.tool_names:
        assert prompt.count(name + "(") == 1, name


def test_toolace_and_glaive_system_prompts_lose_their_tool_lists():
    toolace = import_toolace(TOOLACE)[0]
    assert toolace.messages[0] == {
        "role": "system",
        "content": "You are an expert in composing functions.\nShould you decide to invoke any of the function(s), "
        "put it in the format of [func1(params_name=params_value, params_name2=params_value2...), func2(params)]",
    }
    glaive = import_glaive(GLAIVE)[0]
    assert glaive.messages[0] == {
        "role": "system",
        "content": "You are a helpful assistant with access to the following functions.",
    }
    for record in (toolace, glaive):
        prompt = fallback_prompt(record.messages, record.tools)
        for name in record.tool_names:
            assert prompt.count(name + "(") == 1, name
    # A system prompt that is nothing but the list leaves no system message.
    bare = dict(TOOLACE, system=json.dumps([{"name": "f", "description": "F", "parameters": {}}]))
    bare["conversations"] = [{"from": "user", "value": "f please"}, {"from": "assistant", "value": "[f()]"}]
    assert [m["role"] for m in import_toolace(bare)[0].messages] == ["user"]


# ----------------------------------------------------------------------------- tool messages: name, tool_call_id


def test_tool_messages_keep_name_and_tool_call_id():
    # Hermes: one message per <tool_response>, named by the function it gives, its content unwrapped.
    hermes = import_hermes(HERMES_MULTI_TURN)[1]
    assert hermes.messages[-1] == {
        "role": "tool",
        "name": "search_flights",
        "content": '{"flights": [{"flight_number": "AA118", "airline": "American Airlines", "price": "$950", '
        '"flexible_cancellation": true}]}',
    }
    two = dict(HERMES_MULTI_TURN, conversations=[*HERMES_MULTI_TURN["conversations"][:3]])
    two["conversations"].append(
        {
            "from": "tool",
            "value": "<tool_response>\n{'name': 'search_flights', 'content': {'flights': []}}\n</tool_response>\n"
            "<tool_response>\n{'name': 'search_flights', 'content': 'none left'}\n</tool_response>",
        }
    )
    two["conversations"].append({"from": "gpt", "value": "No flights."})
    assert import_hermes(two)[1].messages[-2:] == [
        {"role": "tool", "name": "search_flights", "content": '{"flights": []}'},
        {"role": "tool", "name": "search_flights", "content": "none left"},
    ]
    # ToolACE: one message per result; Glaive: the response named by the call it answers.
    assert import_toolace(TOOLACE)[1].messages[-1] == {
        "role": "tool",
        "name": "Market Trends API",
        "content": '{"S&P 500": 4800.5}',
    }
    assert import_glaive(GLAIVE)[1].messages[-1]["name"] == "get_news_headlines"
    # OpenAI-shaped records: the calls' ids and the tool messages' links survive import, writing and reading.
    raw = {
        "id": "openai-1",
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_9", "name": "get_weather", "content": '{"temp": 4}'},
        ],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}],
        "answer": "It is 4 degrees.",
    }
    (record,) = import_canonical(json.loads(json.dumps(raw)))
    assert record.messages[1]["tool_calls"][0]["id"] == "call_9"
    assert record.messages[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert record.messages[2] == raw["messages"][2]
    assert Record.loads(record.dumps()).to_json() == record.to_json()
    with pytest.raises(RecordError, match=r"messages\[2\].tool_call_id: expected a string"):
        Record.from_json(dict(raw, messages=[*raw["messages"][:2], dict(raw["messages"][2], tool_call_id=9)]))


# ----------------------------------------------------------------------------- ids


def test_ids_are_unique_and_stable(tmp_path):
    other = dict(TOOLACE, conversations=[dict(t) for t in TOOLACE["conversations"]])
    other["conversations"][0]["value"] = "And in Germany?"
    first, second = import_toolace(TOOLACE), import_toolace(other)
    ids = [r.id for r in first + second]
    assert len(set(ids)) == 4 and all(re.fullmatch(r"toolace-[0-9a-f]{12}-[01]", i) for i in ids)
    assert [r.id for r in import_toolace(json.loads(json.dumps(TOOLACE)))] == [r.id for r in first]  # stable
    assert import_glaive(GLAIVE)[0].id.startswith("glaive-")
    # A file that repeats a record still gets distinct ids, the first one unchanged.
    src = tmp_path / "toolace.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in (TOOLACE, other, TOOLACE)) + "\n")
    written = [r.id for r in import_file("toolace", src)]
    assert written == ids + [f"{ids[0]}~1", f"{ids[1]}~1"]


# ----------------------------------------------------------------------------- BFCL directories, file modes


def test_convert_accepts_a_bfcl_directory(tmp_path, capsys):
    bfcl, out = bfcl_directory(tmp_path), tmp_path / "bfcl.jsonl"
    report = convert_file("bfcl", bfcl, out)  # multi-turn entries are skipped and counted, even with "stop"
    assert (report.read, report.written, report.skipped) == (3, 2, 1)
    assert [(r.id, r.meta["category"]) for r in read_records(out)] == [
        ("irrelevance_0", "irrelevance"),
        ("simple_12", "simple"),
    ]
    assert main(["data", "convert", "--format", "bfcl", str(bfcl), str(out)]) == 0
    assert "skipped 1: multi-turn entries are not supported" in capsys.readouterr().out
    (bfcl / "possible_answer" / "BFCL_v3_simple.json").unlink()  # a bad entry inside: named, with the hint
    assert main(["data", "convert", "--format", "bfcl", str(bfcl), str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: {bfcl / 'BFCL_v3_simple.json'}[0] (simple_12): no possible answer")
        and "--on-error skip" in err
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RecordError, match=r"empty: no BFCL_\*\.json test files"):
        convert_file("bfcl", empty, out)


def test_written_files_take_the_mode_a_plain_open_gives(tmp_path):
    old = os.umask(0o027)
    try:
        write_records(import_toolace(TOOLACE), tmp_path / "new.jsonl")
        existing = tmp_path / "existing.json"
        existing.write_text("{}")
        existing.chmod(0o604)
        write_json_atomic(existing, {"a": 1})  # replaced, but with the mode it had, as open(path, "w") keeps it
    finally:
        os.umask(old)
    assert (tmp_path / "new.jsonl").stat().st_mode & 0o777 == 0o640
    assert existing.stat().st_mode & 0o777 == 0o604 and json.loads(existing.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.json", "new.jsonl"]  # no temp file left
