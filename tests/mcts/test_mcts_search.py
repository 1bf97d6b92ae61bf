"""The search driver and the rewards: a deterministic fake generator, then a tiny model through transformers."""

from __future__ import annotations

import math
import random

import pytest

from rftfast.answer import first_step_end
from rftfast.data.chat import END, answer_content, render_example
from rftfast.data.record import Call, Record
from rftfast.generation.base import Child, ExpandRequest, GenerationStats
from rftfast.mcts import (
    JudgeReward,
    MixedReward,
    PairConfig,
    SearchConfig,
    ast_reward,
    judge_reward,
    search,
)
from tests.support.tiny import tiny_tokenizer

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Local time",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}


def _user(text):
    return [{"role": "user", "content": text}]


RECORDS = [
    Record(
        _user("Weather in Paris, in celsius?"),
        [WEATHER, TIME],
        [Call("get_weather", {"city": "Paris", "unit": "celsius"})],
        id="one",
    ),
    Record(
        _user("Weather in Oslo and the time in CET?"),
        [WEATHER, TIME],
        [Call("get_weather", {"city": "Oslo"}), Call("get_time", {"tz": "CET"})],
        id="two",
    ),
    Record(_user("Tell me a joke."), [WEATHER], "Why did the chicken cross the road?", id="text"),
]
# Wrong answers the fake model also writes, so siblings differ in one step.
CORRUPTIONS = {
    "one": [
        '[get_weather(city="London", unit="celsius")]',
        '[get_weather(city="Paris", unit="kelvin")]',
        '[get_time(tz="Paris")]',
    ],
    "two": ['[get_weather(city="Oslo"), get_time(tz="PST")]', '[get_weather(city="Bergen"), get_time(tz="CET")]'],
    "text": ['[get_weather(city="road")]'],
}


@pytest.fixture(scope="module")
def tok():
    corpus = [answer_content(r) for r in RECORDS] + [c for cs in CORRUPTIONS.values() for c in cs]
    return tiny_tokenizer(tuple(corpus + [m["content"] for r in RECORDS for m in r.messages]), 600)


class FakeGenerator:
    """Continues the answer so far along one of the record's candidate answers (truth or a corruption).

    Candidates are those the answer so far is a prefix of; sample j of a request picks one with a random
    generator seeded by the request's seed and j, and writes it up to the next step end (as the real backends
    cut), ending with the end token once the answer is complete. The truth has the higher log-probs.
    """

    def __init__(self, tokenizer, records):
        self.tokenizer = tokenizer
        self.stats = GenerationStats()
        self.end_id = tokenizer.convert_tokens_to_ids(END)
        self.by_prompt = {}
        for r in records:
            truth = answer_content(r)
            self.by_prompt[tuple(render_example(r, tokenizer).prompt_ids)] = [truth] + CORRUPTIONS[r.id]
        self.requests: list[ExpandRequest] = []
        self.outputs: list[list[Child]] = []

    def expand(self, requests):
        out = []
        for req in requests:
            prompt, answer = req.prefix_ids[: req.answer_start], req.prefix_ids[req.answer_start :]
            so_far = self.tokenizer.decode(list(answer), skip_special_tokens=True)
            candidates = [c for c in self.by_prompt[tuple(prompt)] if c.startswith(so_far)]
            rng = random.Random(req.seed)
            children = []
            for _ in range(req.n):
                if not candidates:
                    children.append(self._child(" junk", "stop", -3.0))
                    continue
                pick = rng.randrange(len(candidates))
                rest = candidates[pick][len(so_far) :]
                cut = first_step_end(so_far, rest)
                if cut is None or rest[cut:] in ("", "]"):
                    children.append(self._child(rest, "stop", -0.1 if pick == 0 else -0.7))
                else:
                    children.append(self._child(rest[:cut], "step", -0.1 if pick == 0 else -0.7))
            out.append(children)
            self.stats.prefill_computed += len(req.prefix_ids)
        self.stats.calls += 1
        self.requests += requests
        self.outputs += out
        return out

    data_parallel = (0, 1)

    def close(self):
        pass

    def _child(self, text, finish, logprob):
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"] + ([self.end_id] if finish == "stop" else [])
        return Child(ids, text, [logprob] * len(ids), finish)

    def logprobs(self, prefix_ids, continuations):
        # The judge's options: the first (Excellent) likeliest when the graded answer has no corruption in it.
        prompt = self.tokenizer.decode(list(prefix_ids))
        wrong = any(bad in prompt for bad in ("London", "kelvin", "PST", "Bergen", 'get_time(tz="Paris'))
        scores = [-3.0, -2.0, -1.0, -0.5] if wrong else [-0.2, -2.0, -3.0, -4.0]
        return [[s] + [0.0] * (len(c) - 1) for s, c in zip(scores, continuations)]


# ----------------------------------------------------------------------------------------------------------------
# Rewards
# ----------------------------------------------------------------------------------------------------------------

ONE = RECORDS[0]


@pytest.mark.parametrize(
    "text, complete, expected",
    [
        ("", False, 0.0),
        ("[get_weather(", False, 1 / 5),  # S = 4 steps (open, city, unit, close), + 1 for ending the answer
        ('[get_weather(city="paris",', False, 2 / 5),  # BFCL normalisation: case does not matter
        ('[get_weather(city="Par', False, 1 / 5),  # a value still being written: neither credit nor penalty
        ('[get_weather(city="Paris", unit="celsius")', False, 4 / 5),
        ('[get_weather(city="Paris", unit="celsius")]', True, 1.0),
        ('[get_weather(unit="celsius", city="Paris")]', True, 1.0),  # argument order is free
        ('[get_weather(city="London",', False, 1 / 5 - 1),
        ("[get_time(", False, -1.0),
        ('[get_weather(city="Paris", unit="celsius", days=2)]', True, 3 / 5 - 1),
        ('[get_weather(city="Paris")]', True, 2 / 5 - 1),  # closed without the parameter the truth gives
        ('[get_weather(city="Paris", unit=@@,', False, 2 / 5 - 1),  # a finished step that does not parse
        ('[get_weather(city="Paris", unit="celsius")]', False, 4 / 5),  # right, but not ended
        ("Sure, let me check.", True, -1.0),
    ],
)
def test_ast_reward_scale(text, complete, expected):
    assert ast_reward(ONE, text, complete) == pytest.approx(expected)


def test_ast_reward_parallel_calls_and_text_answers():
    two, text = RECORDS[1], RECORDS[2]
    assert ast_reward(two, '[get_time(tz="CET"), get_weather(city="Oslo")]', True) == 1.0
    assert ast_reward(two, '[get_weather(city="Oslo")]', True) < 0  # a call missing
    assert ast_reward(two, '[get_weather(city="Oslo"), get_time(tz="CET"), get_time(tz="CET")]', True) < 0
    assert ast_reward(text, "Why did", False) == 0.5
    assert ast_reward(text, "Because.", True) == 1.0
    assert ast_reward(text, "[get_weather(", False) == -1.0
    assert ast_reward(text, "", False) == 0.0


def test_ast_reward_uses_bfcl_possible_answers():
    record = Record(
        ONE.messages,
        ONE.tools,
        ONE.answer,
        id="bfcl",
        meta={"possible_answer": [{"get_weather": {"city": ["Paris", "Paris, France"], "unit": ["", "celsius"]}}]},
    )
    assert ast_reward(record, '[get_weather(city="Paris, France")]', True) == 1.0  # unit may be left out
    assert ast_reward(record, '[get_weather(city="paris france",', False) > 0


def test_judge_reward_weights_the_rubric(tok):
    gen = FakeGenerator(tok, RECORDS)
    judge = JudgeReward(gen, tok)
    good = judge(ONE, '[get_weather(city="Paris",', False)
    bad = judge(ONE, '[get_weather(city="London",', False)
    probs = judge.probabilities(ONE, '[get_weather(city="Paris",', False)
    assert sum(probs) == pytest.approx(1.0)
    assert good == pytest.approx(sum(p * w for p, w in zip(probs, (1.0, 0.1, -1.0, -2.0))))
    assert -2.0 <= bad < 0 < good <= 1.0
    assert judge_reward(ONE, '[get_weather(city="London",', generator=gen, tokenizer=tok) == pytest.approx(bad)
    mixed = MixedReward([(ast_reward, 1.0), (judge, 0.5)])
    text = '[get_weather(city="Paris",'
    assert mixed(ONE, text, False) == pytest.approx(ast_reward(ONE, text) + 0.5 * good)


# ----------------------------------------------------------------------------------------------------------------
# Search with the fake generator
# ----------------------------------------------------------------------------------------------------------------

CONFIG = SearchConfig(
    samples_per_expansion=3,
    rounds=6,
    leaves_per_tree=2,
    max_depth=8,
    seed=3,
    progress=False,
    pairs=PairConfig(min_gap=0.1, max_overlap=1.0, accept_value=0.0),
)


def _check_pairs_against_forest(result, tok):
    forest = result.forest
    for pair in result.pairs:
        path = forest.path_tokens(pair.tree, pair.node).tolist()
        assert pair.prompt_ids == result.prompts[pair.tree] + path
        assert pair.answer_start == len(result.prompts[pair.tree])
        spans = [forest.span(pair.tree, int(c)).tolist() for c in forest.children_of(pair.tree, pair.node)]
        assert pair.chosen_ids in spans or pair.chosen_is_truth
        assert pair.rejected_ids in spans and pair.chosen_ids != pair.rejected_ids
        assert pair.chosen_value - pair.rejected_value >= 0.1 and pair.chosen_value >= 0.0
        common = pair.divergence - len(pair.prompt_ids)
        assert pair.chosen_ids[:common] == pair.rejected_ids[:common]
        assert (
            common == len(pair.chosen_ids)
            or common == len(pair.rejected_ids)
            or pair.chosen_ids[common] != pair.rejected_ids[common]
        )


def test_search_grows_all_trees_and_yields_step_pairs(tok):
    gen = FakeGenerator(tok, RECORDS)
    result = search(RECORDS, gen, ast_reward, CONFIG, tokenizer=tok)
    stats, forest = result.stats, result.forest
    # The fake's candidate answers are few: trees are explored to the end before the last round.
    assert stats.rounds == CONFIG.rounds or forest.exhausted[:, 0].all()
    assert len(gen.outputs) == stats.simulations and len(gen.requests) == stats.simulations
    assert stats.nodes == int(forest.num_nodes.sum()) and stats.nodes > len(RECORDS) + 10
    assert stats.samples == CONFIG.samples_per_expansion * stats.simulations
    assert gen.stats.calls == stats.rounds  # one batched call per round, all trees together
    assert stats.wall_seconds >= stats.generator_seconds + stats.reward_seconds + stats.bookkeeping_seconds > 0
    # Every request's prefix is exactly the prompt ids followed by the spans of the leaf's path.
    for req in gen.requests:
        assert req.prefix_ids[: req.answer_start] in {tuple(p) for p in result.prompts}
    assert result.pairs and len(result) == len(result.pairs)
    assert {p.record_id for p in result.pairs} >= {"one", "two"}
    _check_pairs_against_forest(result, tok)
    # The fake writes the truth or a corruption: the chosen step continues the truth, the rejected one does not.
    for pair in result.pairs:
        record = next(r for r in RECORDS if r.id == pair.record_id)
        truth = answer_content(record)
        chosen = tok.decode(pair.prompt_ids[pair.answer_start :] + pair.chosen_ids, skip_special_tokens=True)
        rejected = tok.decode(pair.prompt_ids[pair.answer_start :] + pair.rejected_ids, skip_special_tokens=True)
        assert truth.startswith(chosen) and not truth.startswith(rejected)
    # Node texts are the decoded answers so far, and rewards were given on them.
    for (t, node), text in result.texts.items():
        if forest.terminal[t, node]:  # finished, or at the depth limit
            assert forest.reward[t, node] in (ast_reward(RECORDS[t], text, True), ast_reward(RECORDS[t], text, False))
        else:
            assert forest.reward[t, node] == ast_reward(RECORDS[t], text, False)


def test_search_is_deterministic_and_respects_depth(tok):
    a = search(RECORDS, FakeGenerator(tok, RECORDS), ast_reward, CONFIG, tokenizer=tok)
    b = search(RECORDS, FakeGenerator(tok, RECORDS), ast_reward, CONFIG, tokenizer=tok)
    assert [p.to_json() for p in a.pairs] == [p.to_json() for p in b.pairs]
    assert (a.forest.visits == b.forest.visits).all()
    shallow = search(
        RECORDS,
        FakeGenerator(tok, RECORDS),
        ast_reward,
        SearchConfig(samples_per_expansion=2, rounds=10, max_depth=2, progress=False),
        tokenizer=tok,
    )
    assert shallow.forest.depth.max() <= 2
    deepest = shallow.forest.depth == 2
    assert shallow.forest.terminal[deepest].all()


def test_search_ground_truth_as_chosen(tok):
    config = SearchConfig(
        samples_per_expansion=3,
        rounds=4,
        leaves_per_tree=2,
        seed=1,
        progress=False,
        ground_truth_chosen=True,
        pairs=PairConfig(min_gap=0.1, max_overlap=1.0),
    )
    result = search(RECORDS, FakeGenerator(tok, RECORDS), ast_reward, config, tokenizer=tok)
    truth_pairs = [p for p in result.pairs if p.chosen_is_truth]
    assert truth_pairs
    for pair in truth_pairs:
        record = RECORDS[pair.tree]
        full = render_example(record, tok).input_ids
        assert full[: len(pair.prompt_ids) + len(pair.chosen_ids)] == pair.prompt_ids + pair.chosen_ids
    root_pairs = [p for p in truth_pairs if p.node == 0]
    assert any(p.record_id == "text" for p in root_pairs)  # the text answer as one step against a call


def test_search_marks_leaves_the_generator_cannot_extend(tok):
    class Silent(FakeGenerator):
        def expand(self, requests):
            return [[Child([], "", [], "length") for _ in range(r.n)] for r in requests]

    result = search(
        RECORDS[:1], Silent(tok, RECORDS), ast_reward, SearchConfig(rounds=3, progress=False), tokenizer=tok
    )
    assert result.stats.rounds == 1 and result.forest.terminal[0, 0] and not result.pairs


def test_search_with_the_judge_and_puct_sum(tok):
    gen = FakeGenerator(tok, RECORDS)
    reward = MixedReward([(ast_reward, 1.0), (JudgeReward(gen, tok), 0.25)])
    config = SearchConfig(
        samples_per_expansion=2,
        rounds=3,
        rule="puct",
        backup="sum",
        progress=False,
        pairs=PairConfig(min_gap=0.0, accept_value=-math.inf, max_overlap=1.0),
    )
    result = search(RECORDS[:2], gen, reward, config, tokenizer=tok)
    assert result.stats.reward_seconds > 0 and result.forest.backup_mode == "sum"
    _check_pairs_against_forest_loose(result)


def _check_pairs_against_forest_loose(result):
    for pair in result.pairs:
        assert pair.prompt_ids == result.prompts[pair.tree] + result.forest.path_tokens(pair.tree, pair.node).tolist()


# ----------------------------------------------------------------------------------------------------------------
# Search with a tiny model through the transformers backend
# ----------------------------------------------------------------------------------------------------------------


def test_search_with_tiny_model_and_transformers_backend(tok):
    import torch

    from rftfast.generation import TransformersGenerator
    from tests.support.tiny import tiny_llama

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = _answering_model(torch, tiny_llama, tok)

        class Recording(TransformersGenerator):
            """Keeps each request's prefix and the children returned for it."""

            def expand(self, requests):
                out = super().expand(requests)
                self.seen = getattr(self, "seen", []) + list(zip([r.prefix_ids for r in requests], out))
                return out

        gen = Recording(model, tok, prefix_cache=True)
        config = SearchConfig(
            samples_per_expansion=3,
            rounds=4,
            leaves_per_tree=1,
            max_depth=6,
            max_new_tokens=12,
            temperature=1.5,
            seed=0,
            progress=False,
            pairs=PairConfig(min_gap=0.0, max_overlap=1.0, accept_value=-math.inf),
        )
        result = search(RECORDS[:2], gen, ast_reward, config)
    finally:
        torch.set_num_threads(threads)
    assert result.stats.simulations == len(gen.seen) and result.pairs
    seen = {}
    for prefix, children in gen.seen:
        seen.setdefault(prefix, []).extend(list(c.token_ids) for c in children)
    for pair in result.pairs:
        # chosen and rejected were generated as continuations of exactly the recorded prefix
        assert tuple(pair.prompt_ids) in seen
        assert pair.chosen_ids in seen[tuple(pair.prompt_ids)] and pair.rejected_ids in seen[tuple(pair.prompt_ids)]
        assert pair.prompt_ids[: pair.answer_start] == result.prompts[pair.tree]
    assert result.stats.generator_seconds > result.stats.bookkeeping_seconds


def _answering_model(torch, tiny_llama, tok):
    """A tiny Llama taught the two records' answers a little, so that it writes calls (and some mistakes)."""
    model = tiny_llama(len(tok), seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = []
    for record in RECORDS[:2]:
        example = render_example(record, tok)
        ids = torch.tensor([example.input_ids])
        labels = torch.tensor([example.labels()])
        batch.append((ids, labels))
    for _ in range(40):
        for ids, labels in batch:
            model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def test_ast_reward_judges_a_parameter_name_before_its_value():
    assert ast_reward(ONE, "[get_weather(town=", False) == pytest.approx(1 / 5 - 1)
    assert ast_reward(ONE, "[get_weather(city=", False) == pytest.approx(1 / 5)
    assert ast_reward(ONE, '[get_weather(city="Paris", days="2', False) == pytest.approx(2 / 5 - 1)
