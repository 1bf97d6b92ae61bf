"""`rftfast eval`: judging outputs in each call format, the report table, and the command on a tiny local model."""

import json

import pytest

from rftfast.cli import build_parser, main
from rftfast.data.record import Call, Record
from rftfast.eval import CheckResult, EvalReport, end_token_ids, infer_category, is_live, judge
from rftfast.eval.runner import evaluate
from tests.data.test_importers import BFCL_ANSWER, BFCL_TEST, bfcl_directory
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


# The public shapes: Qwen2.5's chat template asks for Hermes blocks, Llama-3.1's for one bare JSON object.
QWEN_ANSWER = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
LLAMA_ANSWER = '{"name": "get_weather", "parameters": {"city": "Paris"}}'
PYTHONIC_ANSWER = '[get_weather(city="Paris")]'
NO_CALL = Record(RECORD.messages, [TOOL], "I cannot help with that.")
PARALLEL = Record(
    RECORD.messages, [TOOL], [Call("get_weather", {"city": "Paris"}), Call("get_weather", {"city": "Oslo"})]
)


@pytest.mark.parametrize(
    "output, format",
    [
        (QWEN_ANSWER, "hermes"),
        (f"I will look it up.\n{QWEN_ANSWER}\n", "hermes"),  # Qwen may write prose before its blocks
        (LLAMA_ANSWER, "json"),
        (f"[{LLAMA_ANSWER}]", "json"),
        ('{"name": "get_weather", "arguments": "{\\"city\\": \\"paris\\"}"}', "json"),  # OpenAI's string arguments
        (PYTHONIC_ANSWER, "pythonic"),
    ],
)
def test_a_correct_call_is_correct_in_its_format_and_under_auto(output, format):
    assert infer_category(RECORD) == "simple"
    for call_format in (format, "auto"):
        result = judge(RECORD, output, call_format=call_format)
        assert result == CheckResult(True, "ok", ""), call_format
    # Before formats, every answer was read as pythonic: a native call was a parse failure.
    assert judge(RECORD, output).category == ("ok" if format == "pythonic" else "parse_failure")


def test_parallel_calls_in_each_format():
    assert infer_category(PARALLEL) == "parallel"
    oslo = QWEN_ANSWER.replace("Paris", "Oslo")
    answers = {
        "hermes": f"{oslo}\n{QWEN_ANSWER}",  # one block per call, in any order
        "json": f"[{LLAMA_ANSWER}, {LLAMA_ANSWER.replace('Paris', 'Oslo')}]",
        "pythonic": '[get_weather(city="Paris"), get_weather(city="Oslo")]',
    }
    for format, output in answers.items():
        assert judge(PARALLEL, output, call_format=format).valid, format
        assert judge(PARALLEL, output, call_format="auto").valid, format
    one = judge(PARALLEL, QWEN_ANSWER, call_format="auto")
    assert not one.valid and one.category == "wrong_count"


@pytest.mark.parametrize("output", [PYTHONIC_ANSWER, QWEN_ANSWER, LLAMA_ANSWER])
@pytest.mark.parametrize("call_format", ["pythonic", "json", "hermes"])
def test_a_call_in_another_format_than_the_one_given_is_a_parse_failure(output, call_format):
    result = judge(RECORD, output, call_format=call_format)
    if output == {"pythonic": PYTHONIC_ANSWER, "hermes": QWEN_ANSWER, "json": LLAMA_ANSWER}[call_format]:
        assert result.valid
    else:
        assert not result.valid and result.category == "parse_failure"


def test_prose_is_no_call_in_every_format():
    for call_format in ("pythonic", "json", "hermes", "auto"):
        assert judge(NO_CALL, "Sorry, there is no tool for that.", call_format=call_format).valid, call_format
        prose = judge(RECORD, "It is sunny in Paris.", call_format=call_format)
        assert prose.category == "parse_failure", call_format
    # A native call on an irrelevance record is a call, under its format and under auto; read as pythonic it
    # failed to parse and was scored as the right answer, "no call".
    for output, format in ((QWEN_ANSWER, "hermes"), (LLAMA_ANSWER, "json")):
        for call_format in (format, "auto"):
            assert not judge(NO_CALL, output, call_format=call_format).valid
        assert judge(NO_CALL, output).valid


def test_judge_refuses_an_unknown_format():
    with pytest.raises(ValueError, match="format: expected one of"):
        judge(RECORD, PYTHONIC_ANSWER, call_format="xml")


class ScriptedModel:
    """Stands in for a causal LM in `evaluate`: "generates" the given answers, one per prompt in order, each
    followed by the end-of-turn token, so that judging is tested without a model that can write them."""

    device = "cpu"

    def __init__(self, tokenizer, answers):
        self.answer_ids = [tokenizer(a, add_special_tokens=False)["input_ids"] for a in answers]
        self.end = end_token_ids(tokenizer)[0]
        self.generated = 0

    def eval(self):
        return self

    def generate(self, input_ids, **_):
        import torch

        rows = self.answer_ids[self.generated : self.generated + len(input_ids)]
        self.generated += len(rows)
        width = max(map(len, rows)) + 1
        new = torch.tensor([ids + [self.end] * (width - len(ids)) for ids in rows])
        return torch.cat([input_ids, new], dim=1)


def test_evaluate_reads_each_answer_in_the_format_it_shows():
    tokenizer = tiny_tokenizer()
    records = [RECORD, RECORD, RECORD, NO_CALL, NO_CALL]
    answers = [QWEN_ANSWER, LLAMA_ANSWER, PYTHONIC_ANSWER, "Sorry, I cannot.", QWEN_ANSWER]
    report, rows = evaluate(
        ScriptedModel(tokenizer, answers), tokenizer, records, batch_size=2, progress=False, call_format="auto"
    )
    assert [r["output"] for r in rows] == answers
    assert [r["call_format"] for r in rows] == ["hermes", "json", "pythonic", "pythonic", "hermes"]
    assert [r["valid"] for r in rows] == [True, True, True, True, False]
    assert "| simple | 3 | 100.0% |" in report.table() and "| irrelevance | 2 | 50.0% |" in report.table()
    report, rows = evaluate(ScriptedModel(tokenizer, answers), tokenizer, records, batch_size=2, progress=False)
    assert [r["failure"] for r in rows] == ["parse_failure", "parse_failure", "ok", "ok", "ok"]  # pythonic
    assert {r["call_format"] for r in rows} == {"pythonic"}
    with pytest.raises(ValueError, match="call_format: expected one of"):
        evaluate(ScriptedModel(tokenizer, answers), tokenizer, records, progress=False, call_format="xml")


def test_eval_command_reads_formats_with_auto_by_default(capsys):
    parser = build_parser()
    assert parser.parse_args(["eval", "--model", "m", "--data", "d"]).format == "auto"
    for format in ("pythonic", "json", "hermes", "auto"):
        assert parser.parse_args(["eval", "--model", "m", "--data", "d", "--format", format]).format == format
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--model", "m", "--data", "d", "--format", "xml"])
    assert "invalid choice: 'xml'" in capsys.readouterr().err


def test_report_table_counts_failures():
    report = EvalReport()
    for output in ('[get_weather(city="Paris")]', '[get_weather(city="Oslo")]', "[oops"):
        report.add("simple", judge(RECORD, output))
    table = report.table()
    assert "| simple | 3 | 33.3% |" in table and "parse_failure" in table and "wrong_value" in table
    assert report.accuracy == pytest.approx(1 / 3)


def test_report_table_adds_bfcl_live_and_non_live_aggregates():
    ok, wrong = CheckResult(True, "ok", ""), CheckResult(False, "wrong_value", "")
    report = EvalReport()
    for group, results in {
        "simple": [ok, ok, wrong],
        "irrelevance": [ok],
        "live_simple": [ok, wrong],
        "live_parallel_multiple": [wrong, wrong, ok],
        "live_irrelevance": [ok, ok],
    }.items():
        for result in results:
            report.add(group, result)
    lines = report.table().splitlines()
    # Each group, then non-live (4 records), live (7), and all: the aggregates count records.
    assert lines[-3:] == ["| **non-live** | 4 | 75.0% | |", "| **live** | 7 | 57.1% | |", "| **all** | 11 | 63.6% | |"]
    assert lines[2:-3] == sorted(lines[2:-3])  # the groups, in order, before the aggregates
    assert [g for g in ("live_simple", "simple", "irrelevance", "live_irrelevance") if is_live(g)] == [
        "live_simple",
        "live_irrelevance",
    ]

    live_only = EvalReport()
    live_only.add("live_simple", ok)
    assert live_only.table().splitlines()[-2:] == ["| **live** | 1 | 100.0% |", "| **all** | 1 | 100.0% |"]
    non_live_only = EvalReport()  # every record non-live, as in BFCL v1 or canonical files: the all row says it
    non_live_only.add("simple", ok)
    assert "live**" not in non_live_only.table()


def test_eval_command_on_a_bfcl_directory(tmp_path, capsys):
    bfcl = bfcl_directory(tmp_path)
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
