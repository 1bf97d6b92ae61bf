"""`rftfast eval`: judging outputs, the report table, and the command on a tiny local model."""

import json

import pytest

from rftfast.cli import main
from rftfast.data.record import Call, Record
from rftfast.eval import EvalReport, infer_category, judge
from tests.data.test_importers import BFCL_ANSWER, BFCL_TEST
from tests.support.tiny import tiny_llama, tiny_tokenizer

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
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
    assert (
        main(["eval", "--model", str(model_dir), "--data", str(bfcl), "--max-new-tokens", "6", "--output", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "skipped 1: multi-turn entries are not supported" in printed  # counted, not silently dropped
    assert "| simple | 1 |" in printed and "| irrelevance | 1 |" in printed and "| **all** | 2 |" in printed
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["id"] for r in rows} == {"simple_12", "irrelevance_0"}


def _bfcl_dir(tmp_path):
    bfcl = tmp_path / "bfcl"
    (bfcl / "possible_answer").mkdir(parents=True)
    (bfcl / "BFCL_v3_simple.json").write_text(json.dumps(BFCL_TEST) + "\n")
    (bfcl / "possible_answer" / "BFCL_v3_simple.json").write_text(json.dumps(BFCL_ANSWER) + "\n")
    return bfcl


def test_eval_refuses_bad_arguments_before_evaluating(tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    bfcl, tokenizer = _bfcl_dir(tmp_path), tiny_tokenizer()
    model_dir = tmp_path / "model"
    tiny_llama(len(tokenizer)).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)

    def run(*extra, model=model_dir):
        code = main(["eval", "--model", str(model), "--data", str(bfcl), "--max-new-tokens", "2", *extra])
        return code, capsys.readouterr()

    canonical = tmp_path / "canonical.jsonl"
    canonical.write_text(json.dumps(dict(RECORD.to_json(), id="r1", meta={"possible_answer": [{"get_weather": 5}]})))
    code = main(["eval", "--model", str(model_dir), "--data", str(canonical)])  # used to fail after generating
    assert code == 2 and "canonical.jsonl: record 'r1' cannot be judged" in capsys.readouterr().err
    for limit in ("-1", "0"):  # -1 used to drop the last record of each file
        code, out = run("--limit", limit)
        assert code == 2 and "limit: expected at least 1 record per file" in out.err
    code, out = run("--output", str(tmp_path / "new" / "folder" / "judged.jsonl"))  # the folder is made
    assert code == 0 and len((tmp_path / "new" / "folder" / "judged.jsonl").read_text().splitlines()) == 1
    (tmp_path / "taken").mkdir()
    code, out = run("--output", str(tmp_path / "taken"))
    assert code == 2 and out.err.startswith(f"error: {tmp_path / 'taken'}: is a directory")
    assert "| simple" not in out.out  # refused before evaluating
    code, out = run(model=tmp_path / "no-model")
    assert code == 2 and "no-model: no such model folder" in out.err
    weights_only = tmp_path / "weights-only"
    tiny_llama(len(tokenizer)).save_pretrained(weights_only)
    code, out = run(model=weights_only)
    assert code == 2 and "weights-only: no tokenizer files" in out.err and "sentencepiece" not in out.err
    tokenizer.save_pretrained(weights_only)
    tensors = load_file(weights_only / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, weights_only / "model.safetensors", metadata={"format": "pt"})
    code, out = run(model=weights_only)  # used to load a random up_proj and exit 0
    assert code == 2 and "the checkpoint lacks 1 tensor(s)" in out.err
    assert "model.layers.1.mlp.up_proj.weight" in out.err
