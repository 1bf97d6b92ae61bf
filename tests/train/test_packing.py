"""Tree packing against the unpacked rows it replaces: the layout, and log-probs, losses and every parameter
gradient to 1e-5 relative in fp32, for a tiny Llama and a tiny Qwen2, on random trees and on real pairs."""

import random
from pathlib import Path

import pytest
import torch

from rftfast.data.chat import Example
from rftfast.losses import FusedDPOLoss
from rftfast.mcts import Pair, load_pairs
from rftfast.ops.logprob import sequence_logprobs
from rftfast.train.batching import pad_batch
from rftfast.train.model_io import hidden_states, lm_head_weight
from rftfast.train.packing import (
    TokenTree,
    pack_trees,
    packed_attention,
    packed_hidden_states,
    resolve_attention,
)
from rftfast.train.preference import pair_batch, pair_tree, reference_logps
from rftfast.train.sft import answer_nll, example_trees
from tests.support.tiny import tiny_llama, tiny_qwen2

FIXTURE = Path(__file__).parents[1] / "fixtures" / "pairs_default_iter1.jsonl"
V = 97
TOL = 1e-5


def tiny_model(kind: str, vocab: int = V, seed: int = 0):
    return (tiny_llama if kind == "llama" else tiny_qwen2)(vocab, seed)


def random_trees(rng: random.Random, n: int) -> list[TokenTree]:
    """Trees shaped like a search's: a prompt, answers so far that share parts, short steps branching off."""
    trees = []
    for _ in range(n):
        prompt = [rng.randrange(V) for _ in range(rng.randrange(1, 30))]
        seqs, starts = [], []
        for _ in range(rng.randrange(1, 4)):
            so_far = [rng.randrange(V) for _ in range(rng.randrange(0, 6))]
            for _ in range(2):  # a pair: two steps after the same prefix
                step = [rng.randrange(4) for _ in range(rng.randrange(1, 5))]  # few values: steps often share
                seqs.append(prompt + so_far + step)
                starts.append(len(prompt + so_far))
        trees.append(TokenTree(seqs, starts))
    return trees


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def grads(model) -> dict[str, torch.Tensor]:
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def assert_same_grads(packed: dict, padded: dict) -> None:
    assert packed.keys() == padded.keys() and padded
    for name in padded:
        assert rel(packed[name], padded[name]) < TOL, name


# ----------------------------------------------------------------------------- layout


def test_layout_of_a_hand_made_tree():
    # two pairs of one prompt [1, 2, 3]: answers so far [4] and [4, 5]; steps [6] / [7] and [6] / [8]
    tree = TokenTree([[1, 2, 3, 4, 6], [1, 2, 3, 4, 7], [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 8]], [4, 4, 5, 5])
    batch = pack_trees([tree])
    # distinct tokens, depth-first with children in token order: 1 2 3 4 | 5 6 8 | 6 | 7
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 8, 6, 7]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 5, 4, 4]]
    assert batch.num_tokens == 9 and batch.sequence_tokens == 22 and batch.branched
    # each sequence's one label is scored at its parent's position
    assert batch.labels.tolist() == [6, 7, 6, 8]
    assert batch.label_index.tolist() == [3, 3, 4, 4]
    assert batch.cu_seqlens.tolist() == [0, 1, 2, 3, 4]
    ancestors = {0: [0], 1: [0, 1], 2: [0, 1, 2], 3: [0, 1, 2, 3], 4: [0, 1, 2, 3, 4], 5: [0, 1, 2, 3, 4, 5]}
    ancestors |= {6: [0, 1, 2, 3, 4, 6], 7: [0, 1, 2, 3, 7], 8: [0, 1, 2, 3, 8]}
    mask = batch.dense_mask()[0, 0]
    for i in range(9):
        assert mask[i].nonzero().squeeze(1).tolist() == ancestors[i]


def test_separate_trees_do_not_share_and_sequences_keep_their_order():
    a, b = TokenTree([[5, 6, 7]], [1]), TokenTree([[5, 6, 9], [5, 6]], [2, 1])
    batch = pack_trees([a, b])
    assert batch.input_ids.tolist() == [[5, 6, 7, 5, 6, 9]]  # the same prefix in two trees is laid out twice
    assert batch.labels.tolist() == [6, 7, 9, 6] and batch.cu_seqlens.tolist() == [0, 2, 3, 4]
    assert not batch.dense_mask()[0, 0, 3:, :3].any()


def test_unbranched_packs_are_disjoint_sequences():
    batch = pack_trees([TokenTree([[1, 2, 3]], [1]), TokenTree([[4, 5]], [0])])
    assert not batch.branched and batch.position_ids.tolist() == [[0, 1, 2, 0, 1]]
    # two root chains: one causal call over both, padded to the longer one
    (group,) = batch.chains.groups
    assert batch.chains.count == 2 and group.shape == (2, 3, 3) and group.mask is None
    assert batch.chains.inverse.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    "trees, why",
    [
        ([], "no trees"),
        (["not a tree"], "not a TokenTree"),
        ([TokenTree([], [])], "no sequences"),
        ([TokenTree([[1, 2]], [0, 1])], "2 label starts for 1 sequences"),
        ([TokenTree([[]], [0])], "is empty"),
        ([TokenTree([[1, -3]], [0])], "not an int >= 0"),
        ([TokenTree([[1, 2.0]], [0])], "not an int >= 0"),
        ([TokenTree([[1, 2]], [3])], "label start 3 is not in"),
    ],
)
def test_malformed_trees_are_refused(trees, why):
    with pytest.raises(ValueError, match=why):
        pack_trees(trees)


def test_attention_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_attention("auto", cpu, branched=True) == "tree"
    assert resolve_attention("auto", cuda, branched=True) == "flex"
    assert resolve_attention("dense", cuda, branched=True) == "dense"
    with pytest.raises(ValueError, match="unknown attention"):
        resolve_attention("fast", cpu, branched=True)


def test_packed_attention_puts_the_models_own_back():
    model = tiny_model("llama")
    with pytest.raises(RuntimeError, match="boom"), packed_attention(model, "tree"):
        assert model.config._attn_implementation == "rftfast_tree"
        raise RuntimeError("boom")
    assert model.config._attn_implementation == "sdpa"


# ----------------------------------------------------------------------------- equality with unpacked rows


def packed_vs_padded(model, trees, attention, checkpointing=False):
    seqs = [s for t in trees for s in t.sequences]
    starts = [s for t in trees for s in t.label_starts]
    weight = lm_head_weight(model)
    padded = pad_batch(seqs, starts, pad_id=0)
    ref = sequence_logprobs(
        hidden_states(model, padded["input_ids"], padded["attention_mask"]), weight, padded["labels"]
    )
    ref.pow(2).sum().backward()  # a non-uniform upstream gradient
    ref_grads = grads(model)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
    batch = pack_trees(trees)
    with packed_attention(model, attention):
        logps = sequence_logprobs(
            packed_hidden_states(model, batch, attention), weight, batch.labels, cu_seqlens=batch.cu_seqlens
        )
        logps.pow(2).sum().backward()
    return logps, ref, grads(model), ref_grads, batch


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("attention", ["tree", "dense"])
def test_random_trees_match_unpacked_rows(kind, attention):
    rng = random.Random(len(kind) * 10 + len(attention))
    for seed in range(3):
        model = tiny_model(kind, seed=seed)
        logps, ref, packed, padded, batch = packed_vs_padded(model, random_trees(rng, rng.randrange(1, 5)), attention)
        assert batch.num_tokens < batch.sequence_tokens
        assert rel(logps, ref) < TOL
        assert_same_grads(packed, padded)


def test_gradient_checkpointing_recomputes_through_the_tree_attention():
    model = tiny_model("llama")
    model.config.attention_dropout = 0.0
    logps, ref, packed, padded, _ = packed_vs_padded(model, random_trees(random.Random(3), 3), "tree", True)
    assert rel(logps, ref) < TOL
    assert_same_grads(packed, padded)


def test_plain_calls_inside_the_packed_context_keep_causal_attention():
    model = tiny_model("llama")
    ids = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with torch.no_grad():
        before = hidden_states(model, ids, mask)
        with packed_attention(model, "tree"):
            during = hidden_states(model, ids, mask)
    assert rel(during[mask.bool()], before[mask.bool()]) < TOL


# ----------------------------------------------------------------------------- the training passes


def real_pairs(n: int) -> list[Pair]:
    pairs = load_pairs(FIXTURE)[:n]
    assert pairs
    return pairs


def fixture_vocab(pairs) -> int:
    return 1 + max(max(p.prompt_ids + p.chosen_ids + p.rejected_ids) for p in pairs)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_real_pairs_preference_loss_matches_padded(kind):
    pairs = real_pairs(12)
    model = tiny_model(kind, vocab=fixture_vocab(pairs))
    loss_fn = FusedDPOLoss("sigmoid", beta=0.1, nll_weight=0.5)
    weight = lm_head_weight(model)
    ref_logps = torch.randn(2 * len(pairs), generator=torch.Generator().manual_seed(0)) - 20
    padded = pair_batch(pairs, pad_id=0)
    out_padded = loss_fn(
        hidden_states(model, padded["input_ids"], padded["attention_mask"]),
        weight,
        padded["labels"],
        ref_logps=ref_logps,
    )
    out_padded.loss.backward()
    padded_grads = grads(model)
    batch = pack_trees([pair_tree(pairs)])
    assert batch.num_tokens * 2 < batch.sequence_tokens  # the pairs' prefixes are shared
    with packed_attention(model, "tree"):
        out = loss_fn(
            packed_hidden_states(model, batch), weight, batch.labels, cu_seqlens=batch.cu_seqlens, ref_logps=ref_logps
        )
        out.loss.backward()
    assert rel(out.loss, out_padded.loss) < TOL
    assert (
        rel(out.chosen_logps, out_padded.chosen_logps) < TOL
        and rel(out.rejected_logps, out_padded.rejected_logps) < TOL
    )
    assert_same_grads(grads(model), padded_grads)


def test_reference_pass_packed_matches_padded():
    pairs = real_pairs(20)
    model = tiny_model("qwen2", vocab=fixture_vocab(pairs))
    packed = reference_logps(model, pairs, pad_id=0, batch_size=8, packing=True)
    padded = reference_logps(model, pairs, pad_id=0, batch_size=8, packing=False)
    assert packed.shape == (20, 2) and rel(packed, padded) < TOL


def examples(rng: random.Random, n: int) -> list[Example]:
    preamble = [rng.randrange(V) for _ in range(12)]  # what every example of a run starts with
    out = []
    for _ in range(n):
        prompt = preamble + [rng.randrange(V) for _ in range(rng.randrange(1, 20))]
        answer = [rng.randrange(V) for _ in range(rng.randrange(1, 8))]
        ids = prompt + answer
        out.append(Example(ids, len(prompt), len(ids), prompt_text="", answer_text=""))
    return out


@pytest.mark.parametrize("merge", [True, False])
def test_sft_packed_matches_padded(merge):
    model = tiny_model("llama")
    batch_examples = examples(random.Random(int(merge)), 6)
    padded = pad_batch([e.input_ids for e in batch_examples], [e.answer_start for e in batch_examples], pad_id=0)
    loss_padded, n_padded = answer_nll(model, padded)
    loss_padded.backward()
    padded_grads = grads(model)
    batch = pack_trees(example_trees(batch_examples, merge=merge))
    assert batch.branched == merge and batch.num_tokens <= batch.sequence_tokens
    with packed_attention(model, "tree"):
        loss, n = answer_nll(model, batch)
        loss.backward()
    assert n == n_padded and rel(loss, loss_padded) < TOL
    assert_same_grads(grads(model), padded_grads)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_flex_attention_matches_unpacked_rows_on_gpu():
    model = tiny_model("llama").cuda()
    trees = random_trees(random.Random(5), 3)
    seqs = [s for t in trees for s in t.sequences]
    padded = pad_batch(seqs, [s for t in trees for s in t.label_starts], pad_id=0, device="cuda")
    weight = lm_head_weight(model)
    ref = sequence_logprobs(
        hidden_states(model, padded["input_ids"], padded["attention_mask"]), weight, padded["labels"]
    )
    batch = pack_trees(trees, device="cuda")
    with packed_attention(model, "flex"):
        logps = sequence_logprobs(
            packed_hidden_states(model, batch, "flex"), weight, batch.labels, cu_seqlens=batch.cu_seqlens
        )
    assert rel(logps, ref) < 1e-4


def test_answer_perplexities_packed_match_padded():
    from rftfast.train.deficiency import answer_perplexities

    class Pad:
        pad_token_id = 0

    model = tiny_model("qwen2")
    batch_examples = examples(random.Random(7), 10)
    packed = answer_perplexities(model, Pad(), batch_examples, batch_size=4, packing=True)
    padded = answer_perplexities(model, Pad(), batch_examples, batch_size=4, packing=False)
    assert rel(torch.tensor(packed), torch.tensor(padded)) < TOL
