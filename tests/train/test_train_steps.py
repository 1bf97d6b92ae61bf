"""The training steps on a tiny model: SFT lowers the answer loss; both reference modes agree."""

import copy

import torch

from rftfast.config import PreferenceConfig, WarmupConfig
from rftfast.data.chat import render_example
from rftfast.data.toolworld import generate
from rftfast.train.batching import pad_batch
from rftfast.train.preference import train_preference
from rftfast.train.sft import answer_kl, answer_nll, make_schedule, train_sft
from tests.support.tiny import tiny_llama, tiny_tokenizer
from tests.support.toy_pairs import reversed_pairs


def _setup():
    records = generate(24, seed=3)
    tok = tiny_tokenizer()
    return records, tok, [render_example(r, tok, use_chat_template=False) for r in records]


def test_pad_batch_shifts_labels_onto_the_answer():
    batch = pad_batch([[5, 6, 7, 8], [9, 10]], [2, 1], pad_id=0)
    assert batch["labels"].tolist() == [[-100, 7, 8, -100], [10, -100, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


def test_curriculum_orders_easy_to_hard_with_replay():
    records, tok, examples = _setup()
    levels = [r.meta["level"] for r in records]
    cfg = WarmupConfig(buckets=3, epochs=1.0, batch_size=4, replay=0.0)
    schedule = make_schedule(examples, levels, cfg, seed=0)
    maxima = [max(levels[examples.index(e)] for e in b) for b in schedule.buckets]
    assert maxima == sorted(maxima) and len(schedule.buckets) == 3
    shuffled = make_schedule(examples, levels, WarmupConfig(order="shuffled", epochs=1.0, batch_size=4), seed=0)
    assert len(shuffled.buckets) == 1 and shuffled.total_steps == schedule.total_steps


def test_sft_lowers_the_answer_loss():
    records, tok, examples = _setup()
    model = tiny_llama(len(tok))
    batch = pad_batch([e.input_ids for e in examples], [e.answer_start for e in examples], tok.pad_token_id)
    with torch.no_grad():
        before, n = answer_nll(model, batch)
    cfg = WarmupConfig(epochs=8.0, batch_size=8, lr=3e-3, buckets=2, warmup_steps=2)
    train_sft(
        model,
        tok,
        make_schedule(examples, [0.0] * len(examples), cfg, 0),
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        warmup_steps=cfg.warmup_steps,
        length_group=cfg.length_group,
        seed=0,
    )
    with torch.no_grad():
        after, _ = answer_nll(model, batch)
    assert n == sum(len(e.answer_ids) for e in examples)
    assert float(after) < 0.8 * float(before)


def test_precomputed_and_frozen_reference_agree():
    records, tok, examples = _setup()
    pairs = reversed_pairs(examples[:6])
    model = tiny_llama(len(tok))
    histories = {}
    for mode in ("precomputed", "frozen"):
        m = copy.deepcopy(model)
        cfg = PreferenceConfig(epochs=2.0, batch_size=3, reference=mode, lr=1e-3)
        histories[mode] = train_preference(m, tok, pairs, cfg, seed=0)
    for a, b in zip(histories["precomputed"], histories["frozen"], strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-5
    assert abs(histories["frozen"][0]["rewards/margins"]) < 1e-6  # policy == reference before the first step
    # each step logs its gradient's norm before clipping, the same in both modes
    assert all(h["grad_norm"] > 0 for h in histories["frozen"])
    assert abs(histories["frozen"][0]["grad_norm"] - histories["precomputed"][0]["grad_norm"]) < 1e-4


def test_length_grouping_keeps_the_examples_and_cuts_padding():
    records, tok, examples = _setup()
    schedule = make_schedule(
        examples,
        [r.meta["level"] for r in records],
        WarmupConfig(buckets=2, epochs=3.0, batch_size=4, replay=0.3),
        seed=0,
    )
    plain = list(schedule.batches(4, seed=1))
    grouped = list(schedule.batches(4, seed=1, length_group=3))
    assert len(grouped) == len(plain) == schedule.total_steps
    first = 0
    for steps in schedule.steps_per_bucket:  # each window of 3 steps of a bucket draws the same examples, regrouped
        for start in range(first, first + steps, 3):
            window = slice(start, min(start + 3, first + steps))
            assert sorted(map(id, (e for _, b in plain[window] for e in b))) == sorted(
                map(id, (e for _, b in grouped[window] for e in b))
            )
        first += steps

    def padded(batches):
        return sum(len(b) * max(len(e.input_ids) for e in b) for _, b in batches)

    assert padded(grouped) < padded(plain)


def test_replay_adds_the_examples_answer_nll_once_per_step_whatever_the_accumulation():
    from rftfast.train.runtime import TrainConfig

    records, tok, examples = _setup()
    pairs = reversed_pairs(examples[:6])
    model = tiny_llama(len(tok))
    # nll_weight 0: the chosen-NLL term is a mean per micro-batch, so only it would differ under accumulation
    cfg = PreferenceConfig(epochs=1.0, batch_size=6, lr=1e-3, replay=0.5, nll_weight=0.0)
    runs = {}
    for name, replay, accumulation in (("plain", (), 1), ("replay", examples, 1), ("replay_x3", examples, 3)):
        m = copy.deepcopy(model)
        history = train_preference(
            m, tok, pairs, cfg, seed=0, train=TrainConfig(gradient_accumulation=accumulation), replay=replay
        )
        runs[name] = (history, [p.detach().clone() for p in m.parameters()])
    plain, replayed, accumulated = runs["plain"][0][0], runs["replay"][0][0], runs["replay_x3"][0][0]
    assert "replay_nll" not in plain and replayed["replay_nll"] > 0.5  # 3 answers of an untrained model
    # The replay NLL is the step's loss beside the preference loss, once, with or without micro-batches.
    assert abs(replayed["loss"] - plain["loss"] - replayed["replay_nll"]) < 1e-4
    assert abs(accumulated["replay_nll"] - replayed["replay_nll"]) < 1e-5
    assert abs(accumulated["loss"] - replayed["loss"]) < 1e-4
    moved = [float((a - b).abs().max()) for a, b in zip(runs["replay"][1], runs["plain"][1])]
    assert max(moved) > 1e-5  # the replay changed the update


def _perturbed(model, scale: float, seed: int):
    """A copy of `model` with seeded noise of `scale` added to every weight."""
    other = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return other


def test_answer_kl_is_the_kl_of_the_full_logits_gradients_included():
    records, tok, examples = _setup()
    rows = pad_batch([e.input_ids for e in examples[:5]], [e.answer_start for e in examples[:5]], tok.pad_token_id)
    anchor = tiny_llama(len(tok)).double().eval()
    for scale, seed in ((0.02, 1), (0.3, 2)):  # near the anchor, and far enough for near-certain tokens
        model = _perturbed(anchor, scale, seed).eval()
        kl, n = answer_kl(model, anchor, rows)
        kl.backward()
        got = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        # float64 oracle: the whole logits, log-softmax, the KL's definition at the answer positions
        keep = rows["labels"] != -100
        with torch.no_grad():
            fixed = torch.log_softmax(anchor(rows["input_ids"], attention_mask=rows["attention_mask"]).logits, -1)
        logp = torch.log_softmax(model(rows["input_ids"], attention_mask=rows["attention_mask"]).logits, -1)
        want = (fixed.exp() * (fixed - logp))[keep].sum() / keep.sum()
        want.backward()
        assert n == int(keep.sum()) == sum(len(e.answer_ids) for e in examples[:5])
        kl, want = float(kl.detach()), float(want.detach())
        assert kl > 0 and abs(kl - want) <= 1e-10 * max(1.0, want)
        for g, p in zip(got, model.parameters(), strict=True):
            assert torch.allclose(g, p.grad, rtol=1e-8, atol=1e-12)
    same, _ = answer_kl(copy.deepcopy(anchor), anchor, rows)  # the anchor itself: zero
    assert abs(float(same.detach())) < 1e-12
    ignored = {**rows, "labels": torch.full_like(rows["labels"], -100)}  # no answer token: zero, and no NaN
    empty, count = answer_kl(model, anchor, ignored)
    empty.backward()
    assert count == 0 and float(empty) == 0.0


def test_kl_replay_holds_the_replayed_answers_to_the_stage_start():
    records, tok, examples = _setup()
    pairs = reversed_pairs(examples[:6])
    model = tiny_llama(len(tok))
    runs = {}
    for name, replay_loss, reference, weight in (
        ("plain", "nll", "precomputed", 1.0),
        ("kl", "kl", "precomputed", 1.0),
        ("kl_frozen", "kl", "frozen", 1.0),
        ("kl_weighted", "kl", "precomputed", 3.0),
    ):
        m = copy.deepcopy(model)
        cfg = PreferenceConfig(
            epochs=3.0,
            batch_size=3,
            lr=3e-3,
            replay=1.0,
            nll_weight=0.0,
            replay_loss=replay_loss,
            replay_weight=weight,
            reference=reference,
        )
        history = train_preference(m, tok, pairs, cfg, seed=0, replay=examples if name != "plain" else ())
        runs[name] = (history, [p.detach().clone() for p in m.parameters()])
    kl = runs["kl"][0]
    assert "replay_nll" not in kl[0] and len(kl) == 6
    assert abs(kl[0]["replay_kl"]) < 1e-6  # the first step's policy is the stage's start
    assert all(h["replay_kl"] > 1e-6 for h in kl[1:])  # then it has moved, and the term sees it
    assert abs(kl[0]["loss"] - runs["plain"][0][0]["loss"]) < 1e-5  # a zero term at the start, the same loss
    weighted = runs["kl_weighted"][0]  # the weight scales the term's gradient, not the term it reports
    assert abs(weighted[1]["replay_kl"] - kl[1]["replay_kl"]) < 1e-6
    assert abs(weighted[2]["replay_kl"] - kl[2]["replay_kl"]) > 1e-6
    # with reference="frozen" the anchor is the reference's copy: the same steps
    for a, b in zip(kl, runs["kl_frozen"][0], strict=True):
        assert abs(a["replay_kl"] - b["replay_kl"]) < 1e-5
    moved = [float((a - b).abs().max()) for a, b in zip(runs["kl"][1], runs["plain"][1])]
    assert max(moved) > 1e-5  # the anchor changed the updates after the first
