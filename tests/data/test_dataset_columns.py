"""`to_dataset` / `from_dataset`: native nested columns, exact round trips, parquet, the previous layout."""

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rftfast.data.importers import import_bfcl, import_glaive, import_hermes, import_toolace, import_xlam
from rftfast.data.io import from_dataset, read_records, to_dataset, write_records
from rftfast.data.record import Record, RecordError
from rftfast.data.toolworld import generate
from tests.data.test_importers import BFCL_ANSWER, BFCL_TEST, GLAIVE, HERMES, TOOLACE, XLAM

ARGUMENTS = {
    "nested": {"a": {"b": [1, 2.5, None, {"c": []}]}},
    "list": [1, "two", 3.0, None, True],
    "none": None,
    "float": 1e-300,
    "big": 2**53 + 1,
    "negative_zero": -0.0,
    "unicode": "日本語 ✓ é \u2028",
    "empty": {},
}
SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}, "required": ["q"]}


def edge_records() -> list[Record]:
    """Canonical records (as `Record.from_json` leaves them) that Arrow's null filling would change."""
    call = {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": ARGUMENTS}}
    raw = [
        {  # content None beside tool_calls; a tool message with both links; explicit nulls vs missing keys
            "id": "calls",
            "messages": [
                {"role": "system", "content": None},
                {"role": "user", "name": None, "content": "find it"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "name": "search", "tool_call_id": "call_1", "content": '{"hits": 3}'},
                {"role": "assistant", "tool_calls": [{"function": {"name": "search", "arguments": {}}}]},
                {"role": "tool", "content": "[]", "tool_call_id": None},
                {"role": "assistant", "content": "", "tool_calls": []},
                {"content": "again, with the keys in another order", "role": "user"},
            ],
            "tools": [
                {"type": "function", "function": {"name": "search", "description": "Search.", "parameters": SCHEMA}},
                {
                    "name": "bare",
                    "description": None,
                    "parameters": {"type": "dict", "properties": {"x": {"enum": [1, "a"]}}},
                },
            ],
            "answer": [{"name": "search", "arguments": ARGUMENTS}, {"name": "bare", "arguments": {}}],
            "meta": {
                "int": 1,
                "float": 0.1,
                "bool": True,
                "none": None,
                "list": [1, "a", None],
                "deep": {"x": {"y": []}},
            },
        },
        {"id": "", "messages": [{"role": "user", "content": "hi"}], "tools": [], "answer": "héllo 👋", "meta": {}},
        {"id": "empty text", "messages": [{"role": "user", "content": ""}], "tools": [], "answer": "", "meta": {}},
        {
            "id": "no calls",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [],
            "answer": [],
            "meta": {"k": "v"},
        },
    ]
    return [Record.from_json(r, r["id"]) for r in raw]


def importer_records() -> list[Record]:
    return (
        import_toolace(TOOLACE)
        + import_hermes(HERMES)
        + import_xlam(XLAM)
        + import_glaive(GLAIVE)
        + import_bfcl(BFCL_TEST, BFCL_ANSWER)
    )


def same(back: list[Record], records: list[Record]) -> None:
    assert [r.to_json() for r in back] == [r.to_json() for r in records]
    assert [r.dumps() for r in back] == [r.dumps() for r in records]  # key order too: JSONL written again is the same


@pytest.mark.parametrize("source", ["importers", "toolworld", "edge cases"])
def test_round_trip_is_exact(source):
    records = {"importers": importer_records, "toolworld": lambda: generate(48, seed=5), "edge cases": edge_records}
    records = records[source]()
    same(from_dataset(to_dataset(records)), records)


def test_columns_are_native_with_json_text_only_at_the_heterogeneous_leaves():
    ds = to_dataset(edge_records() + generate(6))
    schema = ds.data.schema

    def list_of_struct(t):
        return pa.types.is_list(t) and pa.types.is_struct(t.value_type)

    messages, tools, calls = (schema.field(name).type for name in ("messages", "tools", "answer_calls"))
    assert list_of_struct(messages) and list_of_struct(tools) and list_of_struct(calls)
    message = messages.value_type
    assert [message.field(i).name for i in range(message.num_fields)] == [
        "role",
        "content",
        "name",
        "tool_call_id",
        "tool_calls",
    ]
    tool_call = message.field("tool_calls").type.value_type
    assert pa.types.is_struct(tool_call.field("function").type)
    assert tool_call.field("function").type.field("arguments").type == pa.string()
    assert tools.value_type.field("function").type.field("parameters").type == pa.string()
    assert schema.field("answer_text").type == pa.string() and schema.field("meta").type == pa.string()
    assert not isinstance(ds.features["messages"], datasets.Value) and not isinstance(
        ds.features["tools"], datasets.Value
    )
    row = ds[0]
    assert row["messages"][2]["tool_calls"][0]["function"]["name"] == "search"
    assert json.loads(row["messages"][2]["tool_calls"][0]["function"]["arguments"]) == ARGUMENTS
    assert row["tools"][0] == {
        "type": "function",
        "function": {"name": "search", "description": "Search.", "parameters": json.dumps(SCHEMA)},
    }
    assert row["answer_text"] is None and [c["name"] for c in row["answer_calls"]] == ["search", "bare"]
    assert ds[1]["answer_calls"] is None and ds[1]["answer_text"] == "héllo 👋"
    assert ds[3]["answer_calls"] == [] and ds[3]["answer_text"] is None


def test_parquet_through_load_dataset_and_read_records(tmp_path):
    records = importer_records() + generate(12, seed=1) + edge_records()
    path = tmp_path / "records.parquet"
    to_dataset(records).to_parquet(str(path))
    loaded = datasets.load_dataset("parquet", data_files=str(path), split="train")
    assert not isinstance(loaded.features["messages"], datasets.Value)
    same(from_dataset(loaded), records)
    same(list(read_records(path)), records)
    to_dataset(records).to_json(str(tmp_path / "rows.jsonl"), force_ascii=False)  # the same rows as JSON lines
    same(list(read_records(tmp_path / "rows.jsonl")), records)


def test_the_previous_releases_json_string_layout_still_reads(tmp_path):
    records = importer_records() + edge_records()
    fields = ("messages", "tools", "answer", "meta")
    old = [
        {k: json.dumps(v, ensure_ascii=False) if k in fields else v for k, v in r.to_json().items()} for r in records
    ]
    path = tmp_path / "old.parquet"
    datasets.Dataset.from_list(old).to_parquet(str(path))
    same(list(read_records(path)), records)
    same(from_dataset(datasets.Dataset.from_list(old)), records)
    broken = tmp_path / "broken.parquet"
    datasets.Dataset.from_list([dict(old[0], tools="[not json")]).to_parquet(str(broken))
    with pytest.raises(RecordError, match=r"broken.parquet\[0\]: a nested field is not valid JSON"):
        list(read_records(broken))


def test_no_records_give_an_empty_dataset_with_the_columns(tmp_path):
    ds = to_dataset([])
    assert len(ds) == 0 and ds.features == to_dataset(generate(2)).features
    assert from_dataset(ds) == []
    ds.to_parquet(str(tmp_path / "empty.parquet"))
    table = pq.read_table(tmp_path / "empty.parquet")
    assert table.num_rows == 0 and table.schema.field("messages").type == ds.data.schema.field("messages").type


def test_rows_without_message_keys_take_null_as_missing():
    records = edge_records()
    ds = to_dataset(records).remove_columns("message_keys")
    back = from_dataset(ds)
    assert back[0].messages[1] == {"role": "user", "content": "find it"}  # its explicit null name is gone
    assert back[0].messages[2]["content"] is None and back[0].messages[2]["tool_calls"][0]["id"] == "call_1"
    assert [r.to_json() for r in back[1:]] == [r.to_json() for r in records[1:]]


@pytest.mark.parametrize(
    "message,match",
    [
        ({"role": "assistant", "content": "x", "reasoning_content": "hm"}, r"messages\[0\]: key 'reasoning_content'"),
        ({"role": "user", "content": [{"type": "text", "text": "hi"}]}, r"messages\[0\]\.content: a dataset column"),
    ],
)
def test_a_message_with_no_column_for_it_is_refused_by_name(message, match, tmp_path):
    record = Record.from_json({"id": "odd", "messages": [message], "tools": [], "answer": "ok"})
    with pytest.raises(RecordError, match=r"record 0 \('odd'\)\." + match):
        to_dataset([record])
    assert write_records([record], tmp_path / "odd.jsonl") == 1  # JSONL keeps any JSON
