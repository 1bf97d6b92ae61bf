"""Generation: step stopping, the transformers backend with and without prefix reuse, the vLLM backend's helpers.

The models are tiny Llamas in float64, where a prefix's KV read back from the pool and the same KV recomputed
agree to ~1e-16, so greedy and seeded outputs must be identical with and without reuse.
"""

from __future__ import annotations

import math

import pytest
import torch

from rftfast.answer import cut_at_step
from rftfast.generation import (
    Child,
    ExpandRequest,
    Generator,
    TransformersGenerator,
    depth_first_order,
)
from rftfast.generation.transformers_backend import sample_tokens
from rftfast.generation.vllm_backend import child_from_completion, sampling_params_kwargs
from tests.support.tiny import tiny_llama, tiny_tokenizer

PROMPT = "<|system|>\nAnswer with calls.\n<|user|>\nWhat is the weather in Paris?\n<|assistant|>\n"
ANSWER = '[get_weather(city="Paris, FR", unit=["c", "f"]), get_time(tz="CET")]<|end|>'


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models run fastest on one thread, and several threads crawl when another process holds the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def random_model(tok):
    return tiny_llama(len(tok), seed=1).double()


@pytest.fixture(scope="module")
def answering_model(tok):
    """A tiny Llama trained to answer PROMPT with ANSWER, so greedy decoding writes real calls."""
    model = tiny_llama(len(tok), seed=0).double()
    prompt, answer = _ids(tok, PROMPT), _ids(tok, ANSWER)
    ids = torch.tensor([prompt + answer])
    labels = ids.clone()
    labels[:, : len(prompt)] = -100
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def _ids(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def _tokens_and_logprobs(children: list[list[Child]]):
    return [[(c.token_ids, c.finish_reason) for c in row] for row in children], [
        [c.logprobs for c in row] for row in children
    ]


def _assert_same_children(a: list[list[Child]], b: list[list[Child]]):
    tokens_a, logprobs_a = _tokens_and_logprobs(a)
    tokens_b, logprobs_b = _tokens_and_logprobs(b)
    assert tokens_a == tokens_b
    for row_a, row_b in zip(logprobs_a, logprobs_b):
        for lp_a, lp_b in zip(row_a, row_b):
            assert lp_a == pytest.approx(lp_b, abs=1e-9)


# ----------------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------------


def test_sample_tokens_greedy_top_p_and_seed():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9], [5.0, 0.0, 0.0, 0.0]])
    assert sample_tokens(logits, 0.0, 1.0, None).tolist() == [1, 0]
    rows = logits.repeat(100, 1)  # rows alternate between the two
    draws = lambda seed: sample_tokens(rows, 1.0, 0.5, torch.Generator().manual_seed(seed))  # noqa: E731
    # Row 0's probabilities are .48, .43, .07, .02 for tokens 1, 3, 2, 0: the 0.5-nucleus is {1, 3}. Row 1's is {0}.
    assert set(draws(0)[0::2].tolist()) == {1, 3}
    assert set(draws(0)[1::2].tolist()) == {0}
    assert torch.equal(draws(3), draws(3))


# ----------------------------------------------------------------------------------------------------------------
# The transformers backend
# ----------------------------------------------------------------------------------------------------------------


def test_satisfies_the_generator_protocol(tok, random_model):
    assert isinstance(TransformersGenerator(random_model, tok, prefix_cache=False), Generator)
    assert isinstance(TransformersGenerator(random_model, tok), Generator)


def test_data_parallel_and_close(tok, random_model):
    generator = TransformersGenerator(random_model, tok)
    assert generator.data_parallel == (0, 1)  # one process: the whole of the work
    request = ExpandRequest(tuple(_ids(tok, PROMPT)), max_new_tokens=2, temperature=0)
    generator.expand([request])
    assert generator.pool is not None
    generator.close()
    generator.close()  # idempotent
    assert generator.pool is None and generator.cache is None
    with pytest.raises(RuntimeError, match="closed"):
        generator.expand([request])


def test_steps_of_a_trained_answer(tok, answering_model):
    """Greedy expansion one step at a time rebuilds the trained answer, each piece ending at a step boundary."""
    prompt = _ids(tok, PROMPT)
    for prefix_cache in (False, True):
        generator = TransformersGenerator(answering_model, tok, prefix_cache=prefix_cache)
        prefix, pieces = list(prompt), []
        for _ in range(10):
            [[child]] = generator.expand(
                [ExpandRequest(tuple(prefix), max_new_tokens=24, temperature=0, answer_start=len(prompt))]
            )
            pieces.append((child.text, child.finish_reason))
            prefix += child.token_ids
            if child.finish_reason != "step":
                break
        assert pieces == [
            ("[get_weather(", "step"),
            ('city="Paris, FR",', "step"),
            (' unit=["c", "f"])', "step"),
            (", get_time(", "step"),
            ('tz="CET")]', "step"),
            ("", "stop"),
        ]
        assert prefix[len(prompt) :] == _ids(tok, ANSWER)  # the end token is kept in token_ids


def test_length_and_no_step_stopping(tok, answering_model):
    prompt = tuple(_ids(tok, PROMPT))
    generator = TransformersGenerator(answering_model, tok, prefix_cache=False)
    [[short], [whole]] = generator.expand(
        [
            ExpandRequest(prompt, max_new_tokens=3, temperature=0),
            ExpandRequest(prompt, max_new_tokens=64, temperature=0, stop_at_step=False),
        ]
    )
    assert (short.text, short.finish_reason) == ("[get_", "length")
    assert (whole.token_ids, whole.finish_reason) == (_ids(tok, ANSWER), "stop")
    assert whole.text == ANSWER.replace("<|end|>", "")


def _mcts_rounds(generator, tok, rounds=3, n=3, temperature=0.0, seed=None):
    """Expand a prompt, then every child of the previous round, as the search does; all children of all rounds."""
    prompt = _ids(tok, "<|system|>\nTools: get_weather(city), get_time(tz).\n<|user|>\nWeather?\n<|assistant|>\n")
    frontier, out = [tuple(prompt)], []
    for depth in range(rounds):
        requests = [
            ExpandRequest(
                prefix,
                n=n,
                max_new_tokens=6,
                temperature=temperature,
                top_p=0.9,
                seed=None if seed is None else seed + depth * 100 + i,
                answer_start=len(prompt),
            )
            for i, prefix in enumerate(frontier)
        ]
        children = generator.expand(requests)
        out.append(children)
        frontier = [r.prefix_ids + tuple(c.token_ids) for r, row in zip(requests, children) for c in row][:4]
    return out


@pytest.mark.parametrize("temperature,seed", [(0.0, None), (1.0, 7)])
def test_same_children_with_and_without_prefix_reuse(tok, random_model, temperature, seed):
    without = TransformersGenerator(random_model, tok, prefix_cache=False)
    with_cpp = TransformersGenerator(random_model, tok, prefix_cache=True)
    with_python = TransformersGenerator(random_model, tok, prefix_cache=True, cache_backend="python", block_size=5)
    rounds_without = _mcts_rounds(without, tok, temperature=temperature, seed=seed)
    for generator in (with_cpp, with_python):
        for a, b in zip(rounds_without, _mcts_rounds(generator, tok, temperature=temperature, seed=seed)):
            _assert_same_children(a, b)
        assert generator.stats.prefill_reused > 0
        assert generator.stats.prefill_computed < without.stats.prefill_computed
        assert generator.stats.prefill_computed + generator.stats.prefill_reused == without.stats.prefill_computed
        generator.cache.check_invariants()
        # Every lock was released: the whole cache can be evicted.
        generator.cache.evict(generator.cache.num_blocks)
        assert generator.cache.stats.cached_blocks == 0


def test_single_and_batched_requests_agree(tok, random_model):
    prompt = tuple(_ids(tok, PROMPT))
    requests = [
        ExpandRequest(prompt, n=2, max_new_tokens=5, temperature=0),
        ExpandRequest(prompt + (7,), n=1, max_new_tokens=5, temperature=0),
        ExpandRequest(prompt[:-3], n=3, max_new_tokens=5, temperature=0),
    ]
    for prefix_cache in (False, True):
        batched = TransformersGenerator(random_model, tok, prefix_cache=prefix_cache).expand(requests)
        single = [TransformersGenerator(random_model, tok, prefix_cache=prefix_cache).expand([r])[0] for r in requests]
        _assert_same_children(batched, single)
        assert [len(row) for row in batched] == [2, 1, 3]
        for row in batched:  # greedy: the n children of one request are the same
            assert all(c.token_ids == row[0].token_ids for c in row)


def test_reuse_under_a_tiny_pool_still_gives_the_same_children(tok, random_model):
    """Eviction, allocation failures and copy-on-write under pressure must not change any output."""
    reference = _mcts_rounds(TransformersGenerator(random_model, tok, prefix_cache=False), tok, temperature=1.0, seed=3)
    for num_blocks, block_size in ((6, 4), (3, 16), (40, 3)):
        generator = TransformersGenerator(random_model, tok, num_blocks=num_blocks, block_size=block_size)
        for a, b in zip(reference, _mcts_rounds(generator, tok, temperature=1.0, seed=3)):
            _assert_same_children(a, b)
        generator.cache.check_invariants()


def test_logprobs_match_a_plain_forward_and_the_sampled_ones(tok, random_model):
    prefix = _ids(tok, PROMPT)
    continuations = [[5, 6, 7, 8], [], [9], [10, 11]]
    ids = torch.tensor([prefix + continuations[0]])
    full = torch.log_softmax(random_model(input_ids=ids).logits[0], -1)
    expected = [full[len(prefix) - 1 + i, t].item() for i, t in enumerate(continuations[0])]
    for prefix_cache in (False, True):
        generator = TransformersGenerator(random_model, tok, prefix_cache=prefix_cache)
        for _ in range(2):  # the second time the prefix comes from the cache
            out = generator.logprobs(prefix, continuations)
            assert [len(x) for x in out] == [4, 0, 1, 2]
            assert out[0] == pytest.approx(expected, abs=1e-9)
        # A sampled child's log-probs are the model's (temperature 1) log-probs of its tokens.
        [[child]] = generator.expand([ExpandRequest(tuple(prefix), max_new_tokens=5, temperature=1.7, seed=0)])
        assert child.logprobs == pytest.approx(generator.logprobs(prefix, [child.token_ids])[0], abs=1e-9)


def test_bad_prefixes_raise(tok, random_model):
    generator = TransformersGenerator(random_model, tok)
    with pytest.raises(ValueError, match="int32"):
        generator.expand([ExpandRequest((1, 2**40), max_new_tokens=2)])
    with pytest.raises(ValueError, match="empty"):
        generator.logprobs([], [[1]])
    with pytest.raises(ValueError):
        ExpandRequest((), max_new_tokens=2)


# ----------------------------------------------------------------------------------------------------------------
# The vLLM backend: pure helpers without vLLM, the real thing when it is installed
# ----------------------------------------------------------------------------------------------------------------


def test_depth_first_order_puts_siblings_together_and_parents_first():
    prefixes = [(1, 2, 3, 9), (4,), (1, 2), (1, 2, 3), (1, 5), (1, 2, 3, 8), (4, 1)]
    order = depth_first_order(prefixes)
    assert [prefixes[i] for i in order] == [(1, 2), (1, 2, 3), (1, 2, 3, 8), (1, 2, 3, 9), (1, 5), (4,), (4, 1)]
    assert depth_first_order([(3,), (3,), (2,)]) == [2, 0, 1]  # duplicates keep their order


def test_sampling_params_kwargs():
    request = ExpandRequest((1, 2, 3), n=4, max_new_tokens=20, temperature=0.7, top_p=0.9, seed=11)
    assert sampling_params_kwargs(request, {7, 2}) == dict(
        n=4,
        temperature=0.7,
        top_p=0.9,
        max_tokens=20,
        stop=["<|end|>"],
        stop_token_ids=[2, 7],
        logprobs=1,
        seed=11,
        skip_special_tokens=True,
    )


def test_vllm_completions_are_cut_at_the_first_step(tok):
    decode = lambda ids: tok.decode(list(ids), skip_special_tokens=True)  # noqa: E731
    ids = _ids(tok, 'city="Paris, FR", unit=1)]<|end|>')
    request = ExpandRequest((1,), max_new_tokens=len(ids))
    cut = cut_at_step(ids, decode, answer_so_far="[get_weather(")
    assert decode(ids[:cut]) == 'city="Paris, FR",'
    child = child_from_completion(ids, [-0.5] * len(ids), "stop", request, decode, "[get_weather(")
    assert (child.text, child.finish_reason, len(child.logprobs)) == ('city="Paris, FR",', "step", cut)
    whole = child_from_completion(ids, [-0.5] * len(ids), "stop", ExpandRequest((1,), stop_at_step=False), decode)
    assert (whole.token_ids, whole.finish_reason) == (ids, "stop")
    assert child_from_completion(ids[:2], [0.0, 0.0], "length", request, decode, "[f(").finish_reason == "length"


def test_vllm_generator_end_to_end(tok, random_model, tmp_path):
    pytest.importorskip("vllm")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a GPU")
    from rftfast.generation import VLLMGenerator

    random_model.float().save_pretrained(tmp_path)
    random_model.double()
    tok.save_pretrained(tmp_path)
    generator = VLLMGenerator(str(tmp_path), gpu_memory_utilization=0.3)
    prompt = tuple(_ids(tok, PROMPT))
    children = generator.expand(
        [
            ExpandRequest(prompt, n=3, max_new_tokens=8, temperature=0),
            ExpandRequest(prompt, n=2, max_new_tokens=8, temperature=1.0, seed=0),
        ]
    )
    assert [len(row) for row in children] == [3, 2]
    assert all(
        len(c.logprobs) == len(c.token_ids) and all(math.isfinite(x) for x in c.logprobs)
        for row in children
        for c in row
    )
    assert generator.data_parallel == (0, 1)
    generator.close()
    generator.close()
    with pytest.raises(RuntimeError, match="closed"):
        generator.expand([ExpandRequest(prompt)])
