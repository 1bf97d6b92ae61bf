"""Greedy-divergence pairs: the truth's step against the policy's first wrong step, at the prefix it reaches."""

import pytest
import torch

from rftfast.answer import first_step_end
from rftfast.data.chat import END, render_example
from rftfast.data.record import Call, Record
from rftfast.mcts import divergence_pair, ground_truth
from rftfast.train.diagnostics import pair_margins, verdict_changes
from tests.support.tiny import tiny_tokenizer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CALL = Record(
    [{"role": "user", "content": "Weather in Paris, in celsius?"}],
    [WEATHER],
    [Call("get_weather", {"city": "Paris", "unit": "celsius"})],
    id="call",
)
NO_CALL = Record([{"role": "user", "content": "Tell me a joke."}], [WEATHER], "No tool fits.", id="text")


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer(('[get_weather(city="Paris", unit="celsius")]', "Weather in Paris? No tool fits. London"))


def _greedy(tok, text, end=True):
    return tok(text + (END if end else ""), add_special_tokens=False)["input_ids"]


def _pair(tok, record, greedy_text, end=True):
    example = render_example(record, tok)
    truth = ground_truth(record, tok)
    return (
        truth,
        example,
        divergence_pair(truth, example.prompt_ids, _greedy(tok, greedy_text, end), tok, record_id="r"),
    )


def test_the_truth_written_greedily_makes_no_pair(tok):
    truth, example, pair = _pair(tok, CALL, '[get_weather(city="Paris", unit="celsius")]')
    assert list(truth.answer_ids) == example.answer_ids  # the rendered answer, end of turn included
    assert pair is None


def test_a_wrong_value_pairs_the_truth_step_against_the_greedy_step_at_the_shared_prefix(tok):
    truth, example, pair = _pair(tok, CALL, '[get_weather(city="Paris", unit="kelvin")]')
    answer_so_far = tok.decode(pair.prompt_ids[pair.answer_start :])
    assert pair.prompt_ids[: pair.answer_start] == example.prompt_ids
    assert answer_so_far == '[get_weather(city="Paris",'  # the steps both wrote
    assert tok.decode(pair.chosen_ids).startswith(' unit="celsius")')
    rejected = tok.decode(pair.rejected_ids)
    assert rejected.startswith(' unit="kelvin")')
    # The rejected step ends at the first token that completes a step, and not before.
    assert first_step_end(answer_so_far, rejected) is not None
    assert first_step_end(answer_so_far, tok.decode(pair.rejected_ids[:-1])) is None
    assert pair.chosen_is_truth and pair.origin == "greedy" and pair.node == -1
    assert pair.depth == 2  # "[get_weather(", 'city="Paris",', then the unit
    # The divergence index is the first token where the two continuations differ.
    full_chosen, full_rejected = pair.prompt_ids + pair.chosen_ids, pair.prompt_ids + pair.rejected_ids
    d = pair.divergence
    assert full_chosen[:d] == full_rejected[:d] and full_chosen[d] != full_rejected[d]


def test_a_wrong_first_step_and_prose_and_a_call_where_none_is_due(tok):
    _, _, wrong_function = _pair(tok, CALL, '[get_time(tz="CET")]')
    assert wrong_function.depth == 0 and wrong_function.prompt_ids[wrong_function.answer_start :] == []
    assert tok.decode(wrong_function.rejected_ids) == "[get_time("

    _, _, prose = _pair(tok, CALL, "No tool fits.", end=False)  # cut by the token limit: all of it is rejected
    assert tok.decode(prose.rejected_ids) == "No tool fits."

    _, example, no_call = _pair(tok, NO_CALL, '[get_weather(city="London")]')
    assert no_call.chosen_ids == example.answer_ids  # one step: the whole answer, end of turn included
    assert tok.decode(no_call.rejected_ids) == "[get_weather("


def test_verdict_changes_count_fixed_broken_and_first_wrong_steps_made_right(tok):
    truth, example, pair = _pair(tok, CALL, '[get_weather(city="Paris", unit="kelvin")]')
    right = list(truth.answer_ids)
    still_wrong = _greedy(tok, '[get_weather(city="Paris", unit="kelvin")]')
    # Record 0 failed and is now right; 1 failed and still fails at the same step; 2 was right and broke.
    changes = verdict_changes(
        before=[False, False, True],
        after=[True, False, False],
        held_out_pairs={0: pair, 1: pair},
        truths=[truth, truth, truth],
        after_ids=[right, still_wrong, still_wrong],
    )
    assert changes == {"fixed": 1, "broken": 1, "failed_before": 2, "fix_rate": 0.5, "first_wrong_steps": 2}
    with pytest.raises(ValueError, match="one entry per record"):
        verdict_changes([True], [True, False], {}, [truth], [right])


def test_pair_margins():
    before = torch.tensor([[-1.0, -2.0], [-3.0, -1.0]])
    after = torch.tensor([[-0.5, -2.5], [-2.0, -1.5]])
    assert pair_margins(before) == {"pairs": 2, "ranked_right": 0.5, "mean_margin": -0.5, "median_margin": -2.0}
    out = pair_margins(after, ref_logps=before)
    assert out["ranked_right"] == 0.5 and out["reward_accuracy"] == 1.0
    assert out["mean_reward_margin"] == pytest.approx(((2.0 - 1.0) + (-0.5 + 2.0)) / 2)
    assert pair_margins(torch.zeros(0, 2)) == {"pairs": 0}
