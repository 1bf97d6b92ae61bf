"""Importers on records written in each format's exact shape, awkward cases included; convert CLI; IO."""

import json

import pytest

from rftfast.cli import main
from rftfast.data.convert import convert_file
from rftfast.data.importers import import_bfcl, import_glaive, import_hermes, import_toolace, import_xlam
from rftfast.data.io import from_dataset, read_records, to_dataset, write_records
from rftfast.data.record import Call, Record, RecordError

TOOLACE = {
    "system": "You are an expert in composing functions. Here is a list of functions in JSON format that you can "
    'invoke:\n[{"name": "Market Trends API", "description": "Get the latest market trends", '
    '"parameters": {"type": "dict", "properties": {"trend_type": {"description": "Trend", '
    '"type": "string"}, "country": {"description": "Country code", "type": "string"}}, '
    '"required": ["trend_type"]}}, {"name": "pkg.stock_quote", "description": "Quote", '
    '"parameters": {"type": "dict", "properties": {"symbols": {"type": "array"}}, '
    '"required": ["symbols"]}}]\nShould you decide to invoke any of the function(s), put it in the '
    "format of [func1(params_name=params_value, params_name2=params_value2...), func2(params)]",
    "conversations": [
        {"from": "user", "value": "What are the market indexes in the US, and quotes for AAPL and MSFT?"},
        {
            "from": "assistant",
            "value": '[Market Trends API(trend_type="MARKET_INDEXES", country="us"), '
            'pkg.stock_quote(symbols=["AAPL", "MSFT"])]',
        },
        {"from": "tool", "value": '[{"name": "Market Trends API", "results": {"S&P 500": 4800.5}}]'},
        {"from": "assistant", "value": "The S&P 500 stands at 4,800.5."},
    ],
}

XLAM = {
    "id": 7,
    "query": "Where can I find live giveaways for beta access and games?",
    "answers": '[{"name": "live_giveaways_by_type", "arguments": {"type": "beta"}}, '
    '{"name": "live_giveaways_by_type", "arguments": {"type": "game"}}]',
    "tools": '[{"name": "live_giveaways_by_type", "description": "Retrieve live giveaways", "parameters": '
    '{"type": {"description": "The type of giveaways", "type": "str", "default": "game"}, '
    '"ids": {"description": "Ids", "type": "List[int]"}, "limit": {"description": "Max", '
    '"type": "int, optional"}}}]',
}

GLAIVE = {
    "system": "SYSTEM: You are a helpful assistant with access to the following functions. Use them if required -\n"
    '{\n    "name": "get_news_headlines",\n    "description": "Get the latest news headlines",\n'
    '    "parameters": {\n        "type": "object",\n        "properties": {\n'
    '            "country": {"type": "string", "description": "The country"}\n        },\n'
    '        "required": ["country"]\n    }\n}\n',
    "chat": "USER: Can you tell me the latest news headlines for the United States? \n\n\nASSISTANT: <functioncall> "
    '{"name": "get_news_headlines", "arguments": \'{"country": "United States"}\'} <|endoftext|>\n\n\n'
    'FUNCTION RESPONSE: {"headlines": ["Biden announces new vaccine mandates"]}\n\n\nASSISTANT: Here are '
    "the latest news headlines: Biden announces new vaccine mandates. <|endoftext|>\n\n\nUSER: Thanks! What "
    'about O\'Brien\'s country, Ireland?\n\n\nASSISTANT: <functioncall> {"name": "get_news_headlines", '
    '"arguments": \'{"country": "Ireland", "note": "it\'s O\'Brien"}\'} <|endoftext|>\n',
}

HERMES = {
    "id": "h1",
    "conversations": [
        {
            "from": "system",
            "value": "You are a function calling AI model. <tools> [{'type': 'function', 'function': "
            "{'name': 'get_stock_price', 'description': 'Price', 'parameters': {'type': "
            "'object', 'properties': {'symbol': {'type': 'string'}}, 'required': "
            "['symbol']}}}] </tools> Use <tool_call></tool_call> tags.",
        },
        {"from": "human", "value": "Price of AAPL and TSLA?"},
        {
            "from": "gpt",
            "value": "<tool_call>\n{'arguments': {'symbol': 'AAPL'}, 'name': 'get_stock_price'}\n"
            '</tool_call>\n<tool_call>\n{"name": "get_stock_price", "arguments": '
            '{"symbol": "TSLA"}}\n</tool_call>',
        },
        {"from": "tool", "value": '<tool_response>\n{"price": 150.75}\n</tool_response>'},
        {"from": "gpt", "value": "AAPL trades at $150.75."},
    ],
}

BFCL_TEST = {
    "id": "simple_12",
    "question": [[{"role": "user", "content": "Area of a triangle, base 10, height 5?"}]],
    "function": [
        {
            "name": "calc.triangle_area",
            "description": "Area",
            "parameters": {
                "type": "dict",
                "properties": {"base": {"type": "integer"}, "height": {"type": "integer"}, "unit": {"type": "string"}},
                "required": ["base", "height"],
            },
        }
    ],
}
BFCL_ANSWER = {
    "id": "simple_12",
    "ground_truth": [{"calc.triangle_area": {"base": [10], "height": [5], "unit": ["", "units"]}}],
}


def bfcl_directory(tmp_path):
    """A BFCL data directory as `rftfast eval` and `convert` read it: simple (with answers), irrelevance, multi-turn."""
    bfcl = tmp_path / "bfcl"
    (bfcl / "possible_answer").mkdir(parents=True)
    (bfcl / "BFCL_v3_simple.json").write_text(json.dumps(BFCL_TEST) + "\n")
    (bfcl / "possible_answer" / "BFCL_v3_simple.json").write_text(json.dumps(BFCL_ANSWER) + "\n")
    (bfcl / "BFCL_v3_irrelevance.json").write_text(json.dumps(dict(BFCL_TEST, id="irrelevance_0")) + "\n")
    multi = dict(BFCL_TEST, id="multi_turn_base_0", question=[[{"role": "user", "content": "a"}]] * 2)
    (bfcl / "BFCL_v3_multi_turn_base.json").write_text(json.dumps(multi) + "\n")
    return bfcl


def test_toolace_bracket_calls_names_with_spaces_and_dots():
    records = import_toolace(TOOLACE)
    assert len(records) == 2  # one per assistant turn
    first, second = records
    assert first.answer == [
        Call("Market Trends API", {"trend_type": "MARKET_INDEXES", "country": "us"}),
        Call("pkg.stock_quote", {"symbols": ["AAPL", "MSFT"]}),
    ]
    assert first.tool_names == ["Market Trends API", "pkg.stock_quote"]
    assert first.tools[0]["function"]["parameters"]["type"] == "object"  # BFCL's "dict" mapped
    assert [m["role"] for m in first.messages] == ["system", "user"]
    assert second.answer == "The S&P 500 stands at 4,800.5."
    assert second.messages[2]["tool_calls"][0]["function"]["name"] == "Market Trends API"
    assert second.messages[3]["role"] == "tool"


def test_xlam_json_strings_and_python_types():
    (record,) = import_xlam(XLAM)
    assert record.answer == [
        Call("live_giveaways_by_type", {"type": "beta"}),
        Call("live_giveaways_by_type", {"type": "game"}),
    ]
    params = record.tools[0]["function"]["parameters"]
    assert params["properties"]["type"] == {"type": "string", "description": "The type of giveaways", "default": "game"}
    assert params["properties"]["ids"]["type"] == "array" and params["properties"]["ids"]["items"] == {
        "type": "integer"
    }
    assert params["properties"]["limit"]["type"] == "integer"
    assert params["required"] == ["ids"]  # defaults and ", optional" are not required


def test_glaive_role_markers_and_single_quoted_arguments():
    records = import_glaive(GLAIVE)
    assert len(records) == 3
    assert records[0].answer == [Call("get_news_headlines", {"country": "United States"})]
    assert records[0].tool_names == ["get_news_headlines"]
    assert records[1].answer.startswith("Here are the latest news headlines")
    assert records[1].messages[-1] == {
        "role": "tool",
        "content": '{"headlines": ["Biden announces new vaccine mandates"]}',
        "name": "get_news_headlines",  # the call it answers
    }
    assert records[2].answer == [Call("get_news_headlines", {"country": "Ireland", "note": "it's O'Brien"})]


def test_hermes_tool_call_tags_with_python_quoting():
    records = import_hermes(HERMES)
    assert records[0].answer == [
        Call("get_stock_price", {"symbol": "AAPL"}),
        Call("get_stock_price", {"symbol": "TSLA"}),
    ]
    assert records[0].tool_names == ["get_stock_price"]
    assert records[1].answer == "AAPL trades at $150.75."


def test_bfcl_entry_with_possible_answer():
    (record,) = import_bfcl(BFCL_TEST, BFCL_ANSWER)
    assert record.answer == [Call("calc.triangle_area", {"base": 10, "height": 5})]  # optional "" left out
    assert record.meta["category"] == "simple"
    assert record.meta["possible_answer"] == BFCL_ANSWER["ground_truth"]
    (irrelevant,) = import_bfcl(dict(BFCL_TEST, id="irrelevance_3"))
    assert irrelevant.answer == "" and irrelevant.meta["category"] == "irrelevance"
    with pytest.raises(RecordError, match="multi-turn"):
        import_bfcl(dict(BFCL_TEST, question=[[{"role": "user", "content": "a"}], [{"role": "user", "content": "b"}]]))


@pytest.mark.parametrize(
    "importer,raw,match",
    [
        (import_toolace, {"conversations": []}, "missing field 'system'"),
        (import_toolace, dict(TOOLACE, system="no tools here"), "no JSON list of functions"),
        (
            import_toolace,
            dict(TOOLACE, conversations=[{"from": "user", "value": "hi"}, {"from": "assistant", "value": "[f(a=]"}]),
            "does not parse",
        ),
        (import_xlam, dict(XLAM, answers='[{"name": "x", "arguments": 5}]'), "arguments must be an object"),
        (import_xlam, dict(XLAM, tools="not json ["), "neither JSON nor a Python literal"),
        (import_glaive, {"system": "", "chat": "hello"}, "no USER:/ASSISTANT: markers"),
        (import_hermes, {"conversations": [{"from": "robot", "value": "x"}]}, "expected {'from'"),
        (import_hermes, {"conversations": [{"from": "human", "value": "x"}]}, "no assistant turn"),
    ],
)
def test_bad_records_say_where_and_what(importer, raw, match):
    with pytest.raises(RecordError, match=match):
        importer(raw, "file.jsonl:3")


def test_convert_stops_or_skips_and_counts(tmp_path, capsys):
    src = tmp_path / "xlam.jsonl"
    bad = dict(XLAM, answers='[{"name": 3}]')
    src.write_text("\n".join(json.dumps(r) for r in (XLAM, bad, XLAM, bad, bad)) + "\n")
    out = tmp_path / "out.jsonl"
    with pytest.raises(RecordError, match=r"^\S*xlam.jsonl:2.answers\[0\]: expected"):  # file:line first
        convert_file("xlam", src, out)
    assert not out.exists()  # nothing half-written
    report = convert_file("xlam", src, out, on_error="skip")
    assert (report.read, report.written, report.skipped) == (5, 2, 3)
    assert sum(report.reasons.values()) == 3
    assert [r.answer for r in read_records(out)] == [import_xlam(XLAM)[0].answer] * 2
    # The command line prints the counts and refuses bad input with a non-zero exit.
    assert main(["data", "convert", "--format", "xlam", "--on-error", "skip", str(src), str(out)]) == 0
    assert "read 5 raw records, wrote 2 canonical records, skipped 3" in capsys.readouterr().out
    assert main(["data", "convert", "--format", "xlam", str(src), str(out)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {src}:2.answers[0]: ")


def test_bfcl_directory_layout_and_json_array_input(tmp_path):
    (tmp_path / "possible_answer").mkdir()
    (tmp_path / "BFCL_v3_simple.json").write_text(
        json.dumps(BFCL_TEST) + "\n" + json.dumps(dict(BFCL_TEST, id="simple_13")) + "\n"
    )
    (tmp_path / "possible_answer" / "BFCL_v3_simple.json").write_text(
        json.dumps(BFCL_ANSWER) + "\n" + json.dumps(dict(BFCL_ANSWER, id="simple_13")) + "\n"
    )
    report = convert_file("bfcl", tmp_path / "BFCL_v3_simple.json", tmp_path / "out.jsonl")
    records = list(read_records(tmp_path / "out.jsonl"))
    assert report.written == 2 and records[0].is_call and records[1].id == "simple_13" and records[1].is_call
    array = tmp_path / "glaive.json"
    array.write_text(json.dumps([GLAIVE, GLAIVE]))
    assert convert_file("glaive", array, tmp_path / "g.jsonl").written == 6


def test_canonical_io_roundtrip_parquet_and_datasets(tmp_path):
    records = import_toolace(TOOLACE) + import_hermes(HERMES) + import_xlam(XLAM)
    path = tmp_path / "canonical.jsonl"
    assert write_records(records, path) == len(records)
    back = list(read_records(path))
    assert [r.to_json() for r in back] == [r.to_json() for r in records]
    ds = to_dataset(records)
    assert [r.to_json() for r in from_dataset(ds)] == [r.to_json() for r in records]
    ds.to_parquet(str(tmp_path / "canonical.parquet"))  # through datasets.load_dataset("parquet")
    assert [r.to_json() for r in read_records(tmp_path / "canonical.parquet")] == [r.to_json() for r in records]


def test_canonical_record_validation_names_the_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = Record([{"role": "user", "content": "hi"}], [], "hello").dumps()
    path.write_text(good + "\n" + json.dumps({"messages": [{"role": "wizard"}], "tools": [], "answer": ""}) + "\n")
    with pytest.raises(RecordError, match=r"bad.jsonl:2.messages\[0\]: expected a role"):
        list(read_records(path))
