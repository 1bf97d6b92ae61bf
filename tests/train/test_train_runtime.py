"""Training switches every stage shares: accumulation, checkpointing, bf16 autocast, LoRA, step logs."""

import copy
import json

import pytest
import torch

from rftfast.config import ConfigError, PreferenceConfig, TrainConfig, WarmupConfig, load_config
from rftfast.data.chat import render_example
from rftfast.data.toolworld import generate
from rftfast.train.loop import micro_batches, rank_micro_batches
from rftfast.train.preference import train_preference
from rftfast.train.runtime import StepLog
from rftfast.train.sft import make_schedule, train_sft
from tests.support.same_update import assert_same_update, use_sgd
from tests.support.tiny import tiny_llama, tiny_tokenizer
from tests.support.toy_pairs import reversed_pairs


@pytest.fixture(scope="module")
def setup():
    records = generate(12, seed=5)
    tok = tiny_tokenizer()
    examples = [render_example(r, tok, use_chat_template=False) for r in records]
    return tok, examples, tiny_llama(len(tok), seed=1)


def _sft(model, tok, examples, train: TrainConfig, steps_epochs=1.0, log=None, lr=2e-3):
    cfg = WarmupConfig(epochs=steps_epochs, batch_size=6, lr=lr, buckets=1, warmup_steps=1, replay=0.0)
    schedule = make_schedule(examples, [0.0] * len(examples), cfg, seed=0)
    return train_sft(
        model,
        tok,
        schedule,
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        warmup_steps=cfg.warmup_steps,
        length_group=cfg.length_group,
        seed=0,
        train=train,
        log=log,
    )


def _max_weight_diff(a, b) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_micro_batches_cover_the_batch_in_order():
    assert micro_batches(list(range(7)), 3) == [[0, 1], [2, 3, 4], [5, 6]]
    assert micro_batches([1, 2], 5) == [[1], [2]]
    assert rank_micro_batches([1, 2, 3], 2) == [[1, 2], [3]]  # one process: the whole batch


@pytest.mark.parametrize("switch", [{"gradient_accumulation": 3}, {"gradient_checkpointing": True}])
def test_sft_memory_switches_give_the_same_update(setup, switch, monkeypatch):
    use_sgd(monkeypatch)
    tok, examples, model = setup
    plain, switched = copy.deepcopy(model), copy.deepcopy(model)
    losses_plain = _sft(plain, tok, examples, TrainConfig(), lr=0.5)
    during = []
    losses_switched = _sft(
        switched,
        tok,
        examples,
        TrainConfig(**switch),
        lr=0.5,
        log=lambda step, m: during.append(switched.model.gradient_checkpointing),
    )
    assert all(during) == bool(switch.get("gradient_checkpointing"))
    assert losses_plain == pytest.approx(losses_switched, rel=1e-5)
    assert_same_update(model.state_dict(), plain.state_dict(), switched.state_dict(), what=str(switch))
    assert not switched.model.gradient_checkpointing


def _pairs(examples):
    return reversed_pairs(examples[:6])


@pytest.mark.parametrize("reference", ["precomputed", "frozen"])
def test_preference_accumulation_gives_the_same_update(setup, reference, monkeypatch):
    use_sgd(monkeypatch)
    tok, examples, model = setup
    cfg = PreferenceConfig(loss_type="sigmoid", nll_weight=0.0, epochs=2.0, batch_size=6, lr=0.5, reference=reference)
    plain, accumulated = copy.deepcopy(model), copy.deepcopy(model)
    h1 = train_preference(plain, tok, _pairs(examples), cfg, seed=0)
    h2 = train_preference(accumulated, tok, _pairs(examples), cfg, seed=0, train=TrainConfig(gradient_accumulation=2))
    assert [h["loss"] for h in h1] == pytest.approx([h["loss"] for h in h2], rel=1e-5)
    assert_same_update(model.state_dict(), plain.state_dict(), accumulated.state_dict(), what=reference)


def test_bf16_autocast_trains_close_to_fp32(setup):
    tok, examples, model = setup
    fp32 = _sft(copy.deepcopy(model), tok, examples, TrainConfig())
    bf16_model = copy.deepcopy(model)
    bf16 = _sft(bf16_model, tok, examples, TrainConfig(precision="bf16"))
    assert bf16[0] == pytest.approx(fp32[0], rel=2e-2)
    assert all(p.dtype == torch.float32 for p in bf16_model.parameters())  # master weights stay fp32
    cfg = PreferenceConfig(epochs=1.0, batch_size=3, lr=1e-3)
    history = train_preference(
        copy.deepcopy(model), tok, _pairs(examples), cfg, seed=0, train=TrainConfig(precision="bf16")
    )
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)


def test_lora_trains_adapters_then_merges_into_a_plain_model(setup, tmp_path):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    tok, examples, model = setup
    lora_model = copy.deepcopy(model)
    _sft(lora_model, tok, examples, TrainConfig(lora_r=4, lora_alpha=8, lora_targets=["q_proj", "v_proj"]))
    assert type(lora_model.model.layers[0].self_attn.q_proj) is torch.nn.Linear  # adapters merged and removed
    after = dict(lora_model.named_parameters())
    before = dict(model.named_parameters())
    assert set(after) == set(before)
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and all(n.endswith(("q_proj.weight", "v_proj.weight")) for n in moved)
    lora_model.save_pretrained(tmp_path, safe_serialization=True)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert _max_weight_diff(reloaded, lora_model) == 0.0
    cfg = PreferenceConfig(epochs=1.0, batch_size=3, lr=1e-3, reference="frozen")
    history = train_preference(
        lora_model, tok, _pairs(examples), cfg, seed=0, train=TrainConfig(lora_r=2, lora_targets=["o_proj"])
    )
    assert len(history) == 2 and type(lora_model.model.layers[0].self_attn.o_proj) is torch.nn.Linear


def test_step_log_writes_jsonl_and_tensorboard(setup, tmp_path):
    tok, examples, model = setup
    log = StepLog(tmp_path, tensorboard=True)
    losses = _sft(copy.deepcopy(model), tok, examples, TrainConfig(), log=lambda s, m: log("warmup", s, m))
    log.close()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == pytest.approx(losses)
    assert {r["stage"] for r in rows} == {"warmup"} and "lr" in rows[0]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_train_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(overrides=["train.precision=fp8"])
    with pytest.raises(ConfigError, match="train.gradient_accumulation"):
        load_config(overrides=["train.gradient_accumulation=0"])
    assert load_config(overrides=["train.lora_r=8"]).train.lora_r == 8


def test_flush_denormals_treats_subnormals_as_zero_inside_only():
    from rftfast.train.runtime import flush_denormals

    tiny = torch.tensor([1e-30], dtype=torch.float32)
    assert float(tiny * 1e-10) != 0.0  # 1e-40 is a subnormal fp32 number
    with flush_denormals(True):
        if not torch.set_flush_denormal(True):
            pytest.skip("this CPU has no flush-to-zero mode")
        assert float(tiny * 1e-10) == 0.0
    assert float(tiny * 1e-10) != 0.0  # the process mode is back to off
    with flush_denormals(False):
        assert float(tiny * 1e-10) != 0.0


def test_flush_denormals_covers_every_intra_op_thread():
    # The mode is a per-thread register: set on the calling thread only, the share of an op that torch's
    # other intra-op threads compute stays subnormal (and on x86's slow path). 4M elements split over two
    # threads; every one of them must come out zero inside, and none outside.
    from rftfast.train.runtime import _openmp_runtime, flush_denormals

    if _openmp_runtime() is None:
        pytest.skip("torch's threads are not on an OpenMP runtime found in /proc/self/maps: only the caller's is set")
    subnormal = torch.full((4_000_000,), 1e-39)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with flush_denormals(True):
            if not torch.set_flush_denormal(True):
                pytest.skip("this CPU has no flush-to-zero mode")
            assert int((subnormal * 0.5).count_nonzero()) == 0
        assert int((subnormal * 0.5).count_nonzero()) == subnormal.numel()
    finally:
        torch.set_num_threads(threads)
