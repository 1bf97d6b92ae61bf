"""The training steps on a tiny model: SFT lowers the answer loss; both reference modes agree."""

import copy

import torch

from rftfast.config import PreferenceConfig, WarmupConfig
from rftfast.data.chat import render_example
from rftfast.data.toolworld import generate
from rftfast.train.batching import pad_batch
from rftfast.train.preference import train_preference
from rftfast.train.sft import answer_nll, make_schedule, train_sft
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
