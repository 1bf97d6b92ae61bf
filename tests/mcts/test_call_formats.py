"""The search, its rewards, its pairs and the deficiency stage in the JSON and Hermes call formats (issue 16, item 1).

Rewards: the same calls earn the same reward at each step's end whatever the format. Search: a model whose chat
template asks for JSON (Llama-3.1) or Hermes blocks (Qwen2.5, Hermes-2-Pro, which writes the arguments before the
name) has its children cut, its truth cut and its nodes scored in that format, and gets pairs whose chosen step is
the truth's step in it. The templates are the public ones, on tiny tokenizers (tests/data/test_chat_templates.py).
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from rftfast.answer import FORMATS, cut_at_step, first_step_end, render_calls
from rftfast.data.chat import render_example
from rftfast.data.record import Call, Record
from rftfast.eval import Judged
from rftfast.eval.checker import CheckResult
from rftfast.generation.base import Child, ExpandRequest, GenerationStats
from rftfast.mcts import (
    JudgeReward,
    PairConfig,
    SearchConfig,
    answer_format,
    ast_reward,
    ast_reward_in,
    divergence_pair,
    ground_truth,
    search,
)
from tests.answer.test_formats import scanned
from tests.data.test_chat_templates import model_tokenizer
from tests.mcts.test_mcts_search import CORRUPTIONS, ONE, RECORDS
from tests.support.tiny import tiny_tokenizer

TEMPLATE_FORMATS = {"qwen2.5": "hermes", "llama-3.1": "json", "hermes-2-pro": "hermes"}


def corrupted(record: Record, text: str) -> Record:
    """`record` answered by the pythonic `text` (one of CORRUPTIONS): the same request, a wrong answer."""
    from rftfast.answer import parse_calls

    return Record(record.messages, record.tools, parse_calls(text), id=record.id)


# ----------------------------------------------------------------------------------------------------------------
# Rewards
# ----------------------------------------------------------------------------------------------------------------


def rewards_at_step_ends(record: Record, calls: list[Call], call_format: str) -> list[float]:
    """`ast_reward` of `calls` written in `call_format`, cut after each of its steps, then finished."""
    text = render_calls(calls, call_format)
    pieces = scanned(text, call_format)
    partial = [ast_reward(record, "".join(pieces[:k]), False, call_format) for k in range(len(pieces) + 1)]
    return partial + [ast_reward(record, text, True, call_format)]


@pytest.mark.parametrize("record", RECORDS[:2], ids=lambda r: r.id)
def test_the_same_calls_earn_the_same_rewards_in_every_format(record):
    answers = [record.answer] + [corrupted(record, text).answer for text in CORRUPTIONS[record.id]]
    for calls in answers:
        pythonic = rewards_at_step_ends(record, calls, "pythonic")
        assert rewards_at_step_ends(record, calls, "json") == pythonic
        assert rewards_at_step_ends(record, calls, "hermes") == pythonic
    # The truth climbs to 1.0; a corruption falls below 0 from its wrong step on.
    truth = rewards_at_step_ends(record, record.answer, "hermes")
    assert truth == sorted(truth) and truth[-1] == 1.0
    assert min(rewards_at_step_ends(record, answers[1], "json")) < 0


@pytest.mark.parametrize(
    "text, complete, expected",
    [  # ONE: get_weather(city="Paris", unit="celsius"); S = 4 steps, +1 for ending the answer
        ("<tool_call>\n", False, 0.0),
        ('<tool_call>\n{"name": "get_weather", "arguments": {', False, 1 / 5),
        ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "paris",', False, 2 / 5),  # BFCL normalising
        ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par', False, 1 / 5),  # a value under way
        ('<tool_call>\n{"name": "get_weather", "arguments": {"town":', False, 1 / 5 - 1),  # a key it does not take
        ('<tool_call>\n{"name": "get_time", "arguments": {', False, -1.0),
        ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>', True, 2 / 5 - 1),
        ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": @@,', False, 2 / 5 - 1),
        # Hermes-2-Pro's order: the arguments, their end, then the name.
        ('<tool_call>\n{ "arguments": {"city": "Paris",', False, 1 / 5),
        ('<tool_call>\n{ "arguments": {"city": "Paris", "unit": "celsius"}', False, 3 / 5),
        ('<tool_call>\n{ "arguments": {"city": "Paris", "unit": "celsius"}, "name": "get_weather"', False, 4 / 5),
        ('<tool_call>\n{ "arguments": {"unit": "celsius", "city": "Paris"}, "name": "get_weather"}\n</tool_call> ',
         True, 1.0),
        ('<tool_call>\n{ "arguments": {"city": "Paris", "unit": "celsius"}, "name": "get_time"', False, 3 / 5 - 1),
        ('<tool_call>\n{ "arguments": {"city": "London",', False, -1.0),  # no expected call takes it
        ('<tool_call>\n{ "arguments": {"city": "Paris"}', False, 1 / 5 - 1),  # ended without the truth's unit
    ],
)  # fmt: skip
def test_ast_reward_scale_in_hermes(text, complete, expected):
    assert ast_reward(ONE, text, complete, "hermes") == pytest.approx(expected)


def test_a_wrong_format_is_wrong_and_text_answers_in_each_format():
    right = render_calls(ONE.answer, "json")
    assert ast_reward(ONE, right, True, "json") == 1.0
    assert ast_reward(ONE, right, True, "hermes") < 0 and ast_reward(ONE, right, True, "pythonic") < 0
    text = RECORDS[2]
    for call_format, opened, begun in [
        ("json", '{"name": "get_weather", "arguments": {', '[{"name": "get_wea'),
        ("hermes", '<tool_call>\n{"name": "get_weather", "arguments": {', "<tool_"),
        ("hermes", '<tool_call>\n{"arguments": {"city": "road",', "<tool_call>\n{"),
    ]:
        assert ast_reward(text, opened, False, call_format) == -1.0
        assert ast_reward(text, begun, False, call_format) == 0.0
        assert ast_reward(text, "Why did", False, call_format) == 0.5
        assert ast_reward(text, "Because.", True, call_format) == 1.0


def test_ast_reward_in_binds_the_format_and_the_judge_shows_the_reference_in_it():
    assert ast_reward_in("pythonic") is ast_reward
    reward = ast_reward_in("json")
    assert reward(ONE, render_calls(ONE.answer, "json"), True) == 1.0
    tok = model_tokenizer("qwen2.5")
    judge = JudgeReward(generator=None, tokenizer=tok)
    assert judge.call_format == "hermes"
    assert render_calls(ONE.answer, "hermes") in tok.decode(judge.prompt_ids(ONE, "", False))
    assert JudgeReward(generator=None, tokenizer=tok, call_format="json").call_format == "json"


@pytest.mark.parametrize("bad", ["auto", "xml"])
def test_bad_format_names_are_value_errors(bad):
    tok = tiny_tokenizer()
    with pytest.raises(ValueError, match="call_format: expected one of"):
        ast_reward(ONE, "", False, bad)
    with pytest.raises(ValueError, match="call_format: expected one of"):
        ast_reward_in(bad)
    with pytest.raises(ValueError, match="call_format: expected one of"):
        JudgeReward(generator=None, tokenizer=tok, call_format=bad)
    with pytest.raises(ValueError, match="call_format: expected one of"):
        answer_format(tok, call_format=bad)
    with pytest.raises(ValueError, match="call_format: expected one of"):
        ground_truth(ONE, tok, call_format=bad)
    with pytest.raises(ValueError, match="call_format: expected one of"):
        ExpandRequest(prefix_ids=(1,), call_format=bad)
    with pytest.raises(ValueError, match="call_format: expected one of"):
        search([ONE], FormatFakeGenerator(tok, [ONE], "pythonic"), tokenizer=tok, call_format=bad)


def test_answer_format_follows_the_template_unless_told():
    assert answer_format(tiny_tokenizer()) == "pythonic"  # the fallback template
    assert answer_format(model_tokenizer("llama-3.1")) == "json"
    assert answer_format(model_tokenizer("qwen2.5"), use_chat_template=False) == "pythonic"
    assert answer_format(model_tokenizer("qwen2.5"), call_format="pythonic") == "pythonic"


# ----------------------------------------------------------------------------------------------------------------
# Search with a model that writes its template's format
# ----------------------------------------------------------------------------------------------------------------


class FormatFakeGenerator:
    """Continues the answer so far along one of the record's candidate answers, as the template renders them
    (the truth, or a corruption), and stops each child where a real backend would: `cut_at_step` on its tokens,
    in `call_format`. Children are slices of the candidates' own token ids, so a node grown along the truth holds
    exactly the truth's tokens. The truth has the higher log-probs."""

    def __init__(self, tokenizer, records, call_format):
        self.tokenizer, self.call_format = tokenizer, call_format
        self.stats = GenerationStats()
        self.stop_ids = {tokenizer.eos_token_id}
        self.by_prompt = {}
        for r in records:
            answers = [r] + [corrupted(r, text) for text in CORRUPTIONS[r.id]]
            examples = [render_example(a, tokenizer) for a in answers]
            self.by_prompt[tuple(examples[0].prompt_ids)] = [e.answer_ids for e in examples]
        self.requests: list[ExpandRequest] = []

    data_parallel = (0, 1)

    def expand(self, requests):
        out = []
        for req in requests:
            self.requests.append(req)
            prompt, answer = list(req.prefix_ids[: req.answer_start]), list(req.prefix_ids[req.answer_start :])
            candidates = [
                c for c in self.by_prompt[tuple(prompt)] if c[: len(answer)] == answer and len(c) > len(answer)
            ]
            rng = random.Random(req.seed)
            children = []
            for _ in range(req.n if candidates else 0):
                pick = rng.randrange(len(candidates))
                rest = candidates[pick][len(answer) :]
                end = cut_at_step(rest, self.tokenizer.decode, self.tokenizer.decode(answer), req.call_format)
                ids = rest if end is None else rest[:end]
                finish = "stop" if ids[-1] in self.stop_ids else "step"
                logprob = -0.1 if pick == 0 else -0.7
                children.append(Child(ids, self.tokenizer.decode(ids), [logprob] * len(ids), finish))
            out.append(children)
        return out

    def logprobs(self, prefix_ids, continuations):
        return [[-1.0] * len(c) for c in continuations]

    def close(self):
        """Nothing to free: the fake holds no model or cache."""


SEARCH = SearchConfig(
    samples_per_expansion=3,
    rounds=6,
    leaves_per_tree=2,
    max_depth=8,
    seed=1,
    progress=False,
    ground_truth_chosen=True,
    pairs=PairConfig(min_gap=0.1, max_overlap=1.0),
)


def check_truth_pairs(pairs, records, tok, call_format):
    """Every truth pair's chosen step is the truth's next step in `call_format`, cut where generation cuts."""
    truth_pairs = [p for p in pairs if p.chosen_is_truth]
    assert truth_pairs
    for pair in truth_pairs:
        example = render_example(records[pair.tree], tok)
        assert example.input_ids[: len(pair.prompt_ids) + len(pair.chosen_ids)] == pair.prompt_ids + pair.chosen_ids
        so_far, chosen = tok.decode(pair.prompt_ids[pair.answer_start :]), pair.chosen_ids
        if chosen[-1] != tok.eos_token_id:  # a step, not the answer's end: it ends at its last token, not before
            assert first_step_end(so_far, tok.decode(chosen), call_format) is not None
            assert first_step_end(so_far, tok.decode(chosen[:-1]), call_format) is None
    return truth_pairs


# Pairs each template's search yields (seeded): one fragment apart, in the template's own text.
PINNED_PAIRS = {
    "qwen2.5": {
        ("one", '"city": "Paris",', '"city": "London",'),
        (
            "text",
            "Why did the chicken cross the road?<|im_end|>",
            '<tool_call>\n{"name": "get_weather", "arguments": {',
        ),
    },
    "llama-3.1": {
        ("one", ' "unit": "celsius"}', ' "unit": "kelvin"}'),
        ("text", "Why did the chicken cross the road?<|eot_id|>", '{"name": "get_weather", "parameters": {'),
    },
    "hermes-2-pro": {  # the arguments before the name: a call's first step is its first argument
        ("one", ' "unit": "celsius"}', ' "unit": "kelvin"}'),
        ("text", "Why did the chicken cross the road?<|im_end|>", '<tool_call>\n{ "arguments": {"city": "road"}'),
    },
}


@pytest.mark.parametrize("model", list(TEMPLATE_FORMATS))
def test_search_cuts_scores_and_pairs_in_the_template_format(model):
    tok, call_format = model_tokenizer(model), TEMPLATE_FORMATS[model]
    gen = FormatFakeGenerator(tok, RECORDS, call_format)
    result = search(RECORDS, gen, config=SEARCH, tokenizer=tok)  # reward and format: the template's
    assert result.call_format == call_format and {r.call_format for r in gen.requests} == {call_format}
    forest = result.forest
    for (t, node), text in result.texts.items():  # every node scored in the format
        scores = [ast_reward(RECORDS[t], text, complete, call_format) for complete in (False, True)]
        if forest.terminal[t, node]:  # finished, or at the depth limit
            assert forest.reward[t, node] in scores
        else:
            assert forest.reward[t, node] == scores[0]
    truth_pairs = check_truth_pairs(result.pairs, RECORDS, tok, call_format)
    steps = {(p.record_id, tok.decode(p.chosen_ids), tok.decode(p.rejected_ids)) for p in truth_pairs}
    assert steps >= PINNED_PAIRS[model]
    # The fake writes the truth or a corruption: a chosen step continues the truth, a rejected one never does.
    for pair in result.pairs:
        truth = render_example(RECORDS[pair.tree], tok).input_ids
        assert truth[: len(pair.prompt_ids) + len(pair.chosen_ids)] == pair.prompt_ids + pair.chosen_ids
        assert truth[: len(pair.prompt_ids) + len(pair.rejected_ids)] != pair.prompt_ids + pair.rejected_ids


def test_search_stage_threads_the_format_from_the_tokenizer(monkeypatch):
    from rftfast.train import search_stage

    tok = model_tokenizer("qwen2.5")
    gens, judges = [], []

    def fake_generator(model, tokenizer, cfg, seed, model_path):
        gens.append(FormatFakeGenerator(tokenizer, RECORDS[:2], "hermes"))
        return gens[-1]

    class RecordingJudge(JudgeReward):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            judges.append(self)

    monkeypatch.setattr(search_stage, "_generator", fake_generator)
    monkeypatch.setattr(search_stage, "JudgeReward", RecordingJudge)
    cfg = search_stage.SearchStageConfig(**{f.name: getattr(SEARCH, f.name) for f in dataclasses.fields(SEARCH)})
    pairs, stats = search_stage.search_pairs(None, tok, RECORDS[:2], cfg, seed=1)
    assert stats["simulations"] > 0 and {r.call_format for r in gens[-1].requests} == {"hermes"}
    check_truth_pairs(pairs, RECORDS[:2], tok, "hermes")
    search_stage.search_pairs(None, tok, RECORDS[:2], dataclasses.replace(cfg, reward="mix"), seed=1)
    assert [judge.call_format for judge in judges] == ["hermes"]  # the judge's reference in the policy's format
    with pytest.raises(ValueError, match="call_format: expected one of"):
        search_stage.search_pairs(None, tok, RECORDS[:2], cfg, seed=1, call_format="yaml")


# ----------------------------------------------------------------------------------------------------------------
# Deficiency: greedy failures judged and paired in the format
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model, wrong, chosen, rejected",
    [
        ("qwen2.5", '[get_weather(city="Paris", unit="kelvin")]', ' "unit": "celsius"}', ' "unit": "kelvin"}'),
        ("llama-3.1", '[get_weather(city="Paris", unit="kelvin")]', ' "unit": "celsius"}', ' "unit": "kelvin"}'),
        # Hermes-2-Pro writes the name last: a wrong function is its last step.
        ("hermes-2-pro", '[get_time(city="Paris", unit="celsius")]', ', "name": "get_weather"', ', "name": "get_time"'),
    ],
)
def test_divergence_pairs_cut_the_greedy_step_in_the_format(model, wrong, chosen, rejected):
    from rftfast.train.deficiency import divergence_pairs

    tok = model_tokenizer(model)
    example = render_example(ONE, tok)
    greedy = render_example(corrupted(ONE, wrong), tok).answer_ids
    (pair,) = divergence_pairs(tok, [ONE], [example], [greedy], [False])
    assert tok.decode(pair.chosen_ids) == chosen and tok.decode(pair.rejected_ids) == rejected
    truth = ground_truth(ONE, tok)
    assert truth.call_format == TEMPLATE_FORMATS[model]
    assert divergence_pair(truth, example.prompt_ids, greedy, tok, record_id="one") == pair


def recording_judge(formats: list):
    """A `judge_greedy` stand-in that records the call format it is asked to judge in and passes every record."""

    def judge_greedy(model, tokenizer, records, prompts, *, call_format, **kwargs):
        formats.append(call_format)
        return [Judged("", CheckResult(True, "ok", ""), ()) for _ in records]

    return judge_greedy


def test_find_deficiencies_judges_greedy_answers_in_the_format(monkeypatch):
    from rftfast.train import deficiency

    formats = []
    fake_judge_greedy = recording_judge(formats)
    monkeypatch.setattr(deficiency, "judge_greedy", fake_judge_greedy)
    monkeypatch.setattr(deficiency, "answer_perplexities", lambda model, tok, examples, *a: [1.0] * len(examples))

    class Model:
        def eval(self):
            return self

    cfg = deficiency.DeficiencyConfig()
    for tok, expected in [(model_tokenizer("llama-3.1"), "json"), (tiny_tokenizer(), "pythonic")]:
        examples = [render_example(ONE, tok)]
        deficiency.find_deficiencies(Model(), tok, [ONE], examples, cfg)
        deficiency.find_deficiencies(Model(), tok, [ONE], examples, cfg, call_format="hermes")
        assert formats[-2:] == [expected, "hermes"]


def test_heldout_eval_judges_greedy_answers_in_the_template_format(monkeypatch):
    from rftfast.train import evaluate

    formats = []
    fake_judge_greedy = recording_judge(formats)
    monkeypatch.setattr(evaluate, "judge_greedy", fake_judge_greedy)
    for tok, expected in [(model_tokenizer("llama-3.1"), "json"), (model_tokenizer("qwen2.5"), "hermes")]:
        metrics, _ = evaluate.heldout_accuracy(None, tok, [ONE], [render_example(ONE, tok)], 8, 1)
        assert formats[-1] == expected and metrics["accuracy"] == 1.0


@pytest.mark.parametrize("model", ["qwen2.5", "llama-3.1"])
def test_the_diagnostics_cut_the_greedy_step_in_the_template_format(model):
    from rftfast.train.deficiency import divergence_pairs
    from rftfast.train.diagnostics import greedy_step

    tok = model_tokenizer(model)
    example = render_example(ONE, tok)
    greedy = render_example(corrupted(ONE, '[get_weather(city="Paris", unit="kelvin")]'), tok).answer_ids
    (pair,) = divergence_pairs(tok, [ONE], [example], [greedy], [False])
    # the policy's greedy continuation at the pair's prefix, cut where it completes a step, is the rejected step
    rest = greedy[len(pair.prompt_ids) - len(example.prompt_ids) :]
    assert greedy_step(tok, pair, rest) == list(pair.rejected_ids)


# ----------------------------------------------------------------------------------------------------------------
# The backends stop children at the request's format's steps
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("call_format", FORMATS)
def test_vllm_children_are_cut_at_the_request_format_s_step(call_format):
    from rftfast.generation.vllm_backend import child_from_completion

    text = render_calls(ONE.answer, call_format)
    ids = list(range(len(text)))
    decode = lambda token_ids: "".join(text[i] for i in token_ids)  # noqa: E731 - one token per character
    request = ExpandRequest(prefix_ids=(0,), n=1, call_format=call_format, answer_start=1)
    child = child_from_completion(ids, [0.0] * len(ids), "length", request, decode)
    assert child.finish_reason == "step" and child.text == scanned(text, call_format)[0]


def test_the_transformers_backend_stops_a_model_at_its_format_s_steps():
    """A tiny model taught one Hermes answer, decoded greedily step by step: the children are the truth's steps
    (`ground_truth`'s ends), and the same model read as pythonic does not stop at them."""
    import torch

    from rftfast.generation import TransformersGenerator
    from tests.support.tiny import tiny_llama

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tok = model_tokenizer("qwen2.5")
        example = render_example(ONE, tok)
        model = tiny_llama(len(tok), seed=0)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        ids, labels = torch.tensor([example.input_ids]), torch.tensor([example.labels()])
        answer_at = labels[0, 1:] != -100
        # Trained until the answer is its greedy continuation, then 20 steps more for a margin, rather than a fixed
        # count: the BPE the tokenizer trains differs between tokenizers releases, and so does how long one answer
        # takes to learn (53 steps under 0.23, 90 under 0.21).
        learnt = None  # the step at which the answer became the model's greedy continuation
        for step in range(400):
            out = model(input_ids=ids, labels=labels)
            if learnt is None and bool((out.logits[0, :-1].argmax(-1) == labels[0, 1:])[answer_at].all()):
                learnt = step
            if learnt is not None and step >= learnt + 20:
                break
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        gen = TransformersGenerator(model.eval(), tok, prefix_cache=True)

        def step(answer, call_format):
            request = ExpandRequest(
                prefix_ids=tuple(example.prompt_ids + answer),
                max_new_tokens=64,
                temperature=0,
                answer_start=len(example.prompt_ids),
                call_format=call_format,
            )
            ((child,),) = gen.expand([request])
            return child

        answer, ends = [], []
        while not answer or answer[-1] != tok.eos_token_id:
            child = step(answer, "hermes")
            assert child.finish_reason in ("step", "stop")
            answer += child.token_ids
            ends.append(len(answer))
        assert answer == example.answer_ids and tuple(ends) == ground_truth(ONE, tok).step_ends
        assert step([], "pythonic").finish_reason != "step"  # no pythonic step in Hermes text
    finally:
        torch.set_num_threads(threads)
