"""The whole method on a model whose chat template asks for Hermes `<tool_call>` blocks (Qwen2.5's public
template on a tiny model): the examples, the search's steps and pairs, and the evaluations all in that format;
and `model.call_format` refused where the template cannot write it."""

import json

import pytest

from rftfast.answer import render_calls
from rftfast.config import ConfigError
from rftfast.mcts import load_pairs
from rftfast.pipeline import run
from tests.data.test_chat_templates import model_tokenizer
from tests.pipeline.test_pipeline import small
from tests.support.tiny import tiny_llama


@pytest.fixture(scope="module")
def hermes_run(tmp_path_factory):
    from rftfast.train import deficiency, evaluate

    tmp = tmp_path_factory.mktemp("hermes")
    tokenizer = model_tokenizer("qwen2.5")
    model = tiny_llama(len(tokenizer), 0)
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    # the template's tool list makes prompts long: room for them, so no record is skipped
    cfg = small(tmp, "hermes", f"model.path={tmp / 'model'}", "model.max_length=4096")
    judged_in = []  # the format of every greedy judging: deficiency scoring and each evaluation

    def spy(module):
        judge = module.judge_greedy

        def recording(*args, call_format, **kwargs):
            judged_in.append((module.__name__, call_format))
            return judge(*args, call_format=call_format, **kwargs)

        return recording

    with pytest.MonkeyPatch.context() as patch:
        for module in (deficiency, evaluate):
            patch.setattr(module, "judge_greedy", spy(module))
        report = run(cfg)
    return cfg, report, tokenizer, judged_in


def test_a_hermes_template_model_is_searched_and_paired_in_its_format(hermes_run):
    cfg, report, tokenizer, _ = hermes_run
    assert set(report["accuracy"]) == {"warmup", "iter_1"}
    pairs = load_pairs(cfg.run_dir / "iter_1" / "pairs.jsonl")
    truth_pairs = [p for p in pairs if p.chosen_is_truth]
    assert truth_pairs
    records = {json.loads(line)["id"]: json.loads(line) for line in (cfg.run_dir / "data" / "train.jsonl").open()}
    for pair in truth_pairs:
        # the chosen step continues the answer so far along the truth as the template writes it: Hermes blocks
        so_far = tokenizer.decode(pair.prompt_ids[pair.answer_start :])
        step = tokenizer.decode(pair.chosen_ids)
        answer = records[pair.record_id]["answer"]
        if isinstance(answer, list):
            from rftfast.data.record import Call

            truth = render_calls([Call(c["name"], c["arguments"]) for c in answer], "hermes")
            assert truth.startswith("<tool_call>")
            assert (so_far + step).removesuffix("<|im_end|>") in truth, (so_far, step, truth)


def test_deficiency_and_held_out_answers_are_judged_in_the_template_format(hermes_run):
    cfg, report, _, judged_in = hermes_run
    # two evaluations (warm-up, iteration 1) and one deficiency scoring, all in Hermes
    assert sorted(judged_in) == sorted(
        [("rftfast.train.evaluate", "hermes")] * 2 + [("rftfast.train.deficiency", "hermes")]
    )
    rows = [json.loads(line) for line in (cfg.run_dir / "warmup" / "heldout.jsonl").open()]
    assert len(rows) == report["stages"]["warmup/eval"]["n"]


def test_the_config_sets_the_format_over_the_template_s(tmp_path):
    # The default run's own template (the fallback, as Jinja) writes pythonic calls; `model.call_format=json`
    # trains, searches and pairs in Llama-3.1's JSON instead.
    cfg = small(tmp_path, "json", "model.call_format=json", "iterations=1")
    run(cfg)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.run_dir / "iter_1" / "model")
    pairs = load_pairs(cfg.run_dir / "iter_1" / "pairs.jsonl")
    truth_steps = [tokenizer.decode(p.prompt_ids[p.answer_start :]) + tokenizer.decode(p.chosen_ids)
                   for p in pairs if p.chosen_is_truth]  # fmt: skip
    calls = [text for text in truth_steps if "name" in text]
    assert calls and all(text.lstrip().startswith(("{", "[{")) for text in calls), calls[:3]
    assert not any(text.lstrip().startswith("[") and "(" in text.split('"')[0] for text in calls)


def test_a_format_outside_the_choices_is_refused_at_load():
    from rftfast.config import load_config

    with pytest.raises(ConfigError, match="model.call_format"):
        load_config(None, ["model.call_format=xml"])
