"""`rftfast eval`: judging outputs, the report table, and the command on a tiny local model."""

import json

import pytest

from rftfast.cli import main
from rftfast.data.record import Call, Record
from rftfast.eval.runner import EvalReport, infer_category, judge
from tests.test_importers import BFCL_ANSWER, BFCL_TEST
from tests.tiny import tiny_llama, tiny_tokenizer

TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"]}}}
RECORD = Record([{"role": "user", "content": "Weather in Paris?"}], [TOOL], [Call("get_weather", {"city": "Paris"})])


def test_judge_verdicts():
    assert judge(RECORD, '[get_weather(city="Paris")]').valid
    assert judge(RECORD, ' [get_weather(city="paris")] ').valid  # BFCL's string normalisation
    wrong = judge(RECORD, '[get_weather(city="Oslo")]')
    assert not wrong.valid and wrong.category == "wrong_value"
    assert judge(RECORD, "[get_weather(city=").category == "parse_failure"
    assert judge(RECORD, '[get_news(city="Paris")]').category == "wrong_function"
    no_call = Record(RECORD.messages, [TOOL], "I cannot help with that.")
    assert infer_category(no_call) == "irrelevance"
    assert judge(no_call, "Sorry, no tool for that.").valid
    assert not judge(no_call, '[get_weather(city="Paris")]').valid


def test_report_table_counts_failures():
    report = EvalReport()
    for output in ('[get_weather(city="Paris")]', '[get_weather(city="Oslo")]', "[oops"):
        report.add("simple", judge(RECORD, output))
    table = report.table()
    assert "| simple | 3 | 33.3% |" in table and "parse_failure" in table and "wrong_value" in table
    assert report.accuracy == pytest.approx(1 / 3)


def test_eval_command_on_a_bfcl_directory(tmp_path, capsys):
    bfcl = tmp_path / "bfcl"
    (bfcl / "possible_answer").mkdir(parents=True)
    (bfcl / "BFCL_v3_simple.json").write_text(json.dumps(BFCL_TEST) + "\n")
    (bfcl / "possible_answer" / "BFCL_v3_simple.json").write_text(json.dumps(BFCL_ANSWER) + "\n")
    (bfcl / "BFCL_v3_irrelevance.json").write_text(json.dumps(dict(BFCL_TEST, id="irrelevance_0")) + "\n")
    multi = dict(BFCL_TEST, id="multi_turn_base_0", question=[[{"role": "user", "content": "a"}]] * 2)
    (bfcl / "BFCL_v3_multi_turn_base.json").write_text(json.dumps(multi) + "\n")
    tokenizer = tiny_tokenizer()
    model_dir = tmp_path / "model"
    tiny_llama(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "judged.jsonl"
    assert main(["eval", "--model", str(model_dir), "--data", str(bfcl), "--max-new-tokens", "6",
                 "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "skipped 1: multi-turn entries are not supported" in printed  # counted, not silently dropped
    assert "| simple | 1 |" in printed and "| irrelevance | 1 |" in printed and "| **all** | 2 |" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["id"] for r in rows} == {"simple_12", "irrelevance_0"}
