"""The TRL drop-in against TRL's own DPOTrainer, from identical weights on the same data; and search pairs exported
to TRL's preference format.

Each comparison trains one SGD step (learning rate 1, no clipping) with both trainers and compares the loss, every
logged metric the drop-in shares with TRL, and every parameter's gradient, taken just before the optimiser step.
"""

import pytest

pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from transformers import TrainerCallback  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from rftfast.integrations.trl import FusedDPOTrainer, pairs_to_trl  # noqa: E402
from rftfast.mcts import Pair  # noqa: E402
from tests.support.tiny import tiny_llama, tiny_tokenizer  # noqa: E402

RTOL = 1e-4
# Metrics both trainers log; TRL's `entropy` and `mean_token_accuracy` need a pass over the vocabulary per token.
SHARED_METRICS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logits/chosen",
    "logits/rejected",
    "num_tokens",
)


def _preferences(name: str) -> "datasets.Dataset":
    """Four text pairs of unequal lengths (so the batch has padding). `name` sets the fingerprint, under which
    datasets caches what TRL precomputes: each trainer must compute its own reference log-probs."""
    table = datasets.Dataset.from_dict(
        {
            "prompt": [
                "What is the weather in Paris?",
                "Weather?",
                "What is the weather in Paris? Use celsius.",
                "Paris",
            ],
            "chosen": [
                '[get_weather(city="Paris", unit="celsius")]',
                "Which city?",
                '[get_weather(city="Paris")]',
                '[get_weather(city="Paris", unit="celsius")]',
            ],
            "rejected": [
                "What is the weather?",
                '[get_weather(city="Paris", unit="celsius")]',
                "[get_weather()]",
                "Paris is in France.",
            ],
        }
    )
    return table.map(lambda row: row, new_fingerprint=name)


class _GradientsBeforeStep(TrainerCallback):
    """Every trainable parameter's gradient just before the optimiser step (after any clipping)."""

    def __init__(self):
        self.grads = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _run(trainer_class, tmp_path, *, with_ref_model=True, peft_config=None, bf16=False, **config):
    tokenizer = tiny_tokenizer()
    model = tiny_llama(len(tokenizer))
    args = DPOConfig(
        output_dir=str(tmp_path / trainer_class.__name__),
        per_device_train_batch_size=4,
        max_steps=1,
        optim="sgd",
        learning_rate=1.0,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=bf16,  # TRL's default is True, on CPU too: autocast would blur a 1e-4 comparison
        disable_tqdm=True,
        **config,
    )
    # A reference unlike the policy: equal ones give rewards of 0 ± rounding, whose signs are noise.
    ref_model = tiny_llama(len(tokenizer), seed=1) if with_ref_model else None
    callback = _GradientsBeforeStep()
    trainer = trainer_class(
        model,
        ref_model,
        args=args,
        train_dataset=_preferences(trainer_class.__name__),
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[callback],
    )
    trainer.train()
    logs = next(entry for entry in trainer.state.log_history if "loss" in entry)
    return trainer, logs, callback.grads


def _compare(tmp_path, *, rtol=RTOL, atol=1e-6, **options):
    """Train one step with each trainer; returns both trainers after checking loss, metrics and gradients."""
    trl_trainer, trl_logs, trl_grads = _run(DPOTrainer, tmp_path, **options)
    trainer, logs, grads = _run(FusedDPOTrainer, tmp_path, **options)
    for name in SHARED_METRICS:
        # Rewards are β × differences of sums near -60, whose fp32 rounding is ~1e-6: hence the absolute term.
        assert logs[name] == pytest.approx(trl_logs[name], rel=rtol, abs=atol), name
    assert grads.keys() == trl_grads.keys()
    for name, trl_grad in trl_grads.items():
        error = float((grads[name] - trl_grad).norm())
        assert error <= rtol * float(trl_grad.norm()) + 1e-9, f"{name}: |Δ| {error:.3g}, |grad| {trl_grad.norm():.3g}"
    return trl_trainer, trainer


def test_sigmoid_matches_trl_in_training_and_evaluation(tmp_path):
    trl_trainer, trainer = _compare(tmp_path, loss_type="sigmoid", beta=0.1)
    trl_metrics, metrics = (t.evaluate(_preferences(f"eval-{type(t).__name__}")) for t in (trl_trainer, trainer))
    for name in ("eval_loss", "eval_rewards/margins", "eval_logps/chosen", "eval_logits/rejected"):
        assert metrics[name] == pytest.approx(trl_metrics[name], rel=RTOL, abs=1e-6), name
    assert metrics["eval_rewards/margins"] != 0


def test_bf16_autocast_stays_close_to_trl(tmp_path):
    # Under autocast TRL's head multiplies in bf16, while the fused head works on the hidden states' dtype.
    _compare(tmp_path, rtol=3e-2, atol=1e-4, bf16=True)


@pytest.mark.parametrize(
    "objective",
    [
        dict(loss_type=["sigmoid", "bco_pair"], loss_weights=[0.7, 0.3], beta=0.2),
        dict(loss_type="robust", label_smoothing=0.2),
        dict(loss_type="exo_pair", label_smoothing=1e-3),
        dict(loss_type="aot", label_smoothing=0.1),  # couples pairs: the recompute strategy
        dict(loss_type=["ipo", "sft"], loss_weights=[1.0, 0.5]),  # 'sft' is the fused loss's NLL term
        dict(loss_type="sft"),
    ],
    ids=["weighted-list", "robust-smoothing", "exo-smoothing", "aot-smoothing", "ipo+sft", "sft"],
)
def test_objectives_match_trl(tmp_path, objective):
    _compare(tmp_path, **objective)


def test_precomputed_reference_matches_trl(tmp_path):
    trl_trainer, *_ = _run(DPOTrainer, tmp_path, precompute_ref_log_probs=True)
    trainer, *_ = _run(FusedDPOTrainer, tmp_path, precompute_ref_log_probs=True)
    for column in ("ref_chosen_logps", "ref_rejected_logps"):  # computed by each trainer's own head
        assert trainer.train_dataset[column] == pytest.approx(trl_trainer.train_dataset[column], rel=1e-5)
    _compare(tmp_path, precompute_ref_log_probs=True)


def test_peft_without_reference_matches_trl(tmp_path):
    peft = pytest.importorskip("peft")
    # Random B as well as A: the adapted policy differs from its reference (adapters disabled) from the start.
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    _, trainer = _compare(tmp_path, with_ref_model=False, peft_config=lora)
    assert trainer.ref_model is None
    assert next(e for e in trainer.state.log_history if "loss" in e)["rewards/margins"] != 0


@pytest.mark.parametrize(
    "option, match",
    [
        (dict(loss_type="aot_unpaired"), "loss_type"),
        (dict(loss_type="sigmoid", label_smoothing=0.1), "label_smoothing"),
        (dict(ld_alpha=0.5), "ld_alpha"),
        (dict(f_divergence_type="js_divergence"), "f_divergence_type"),
        (dict(use_weighting=True), "use_weighting"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_options_the_fused_loss_cannot_match_are_refused(tmp_path, option, match):
    with pytest.raises(ValueError, match=f"^{match}: "):  # the drop-in's message, naming the option
        _run(FusedDPOTrainer, tmp_path, **option)


def test_prompt_learning_peft_is_refused(tmp_path):
    peft = pytest.importorskip("peft")
    prompt_tuning = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2)
    with pytest.raises(ValueError, match="prompt-learning"):
        _run(FusedDPOTrainer, tmp_path, with_ref_model=False, peft_config=prompt_tuning)


# ----------------------------------------------------------------------------- search pairs exported to TRL


def _searched():
    """A record, and two pairs as a search would find them: the whole answer against a wrong one (both end the
    answer), and a step in the middle of the answer against another (neither ends it)."""
    from rftfast.data.chat import render_example
    from rftfast.data.record import Record

    tokenizer = tiny_tokenizer()
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    record = Record.from_json(
        {
            "id": "paris",
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": tools,
            "answer": [{"name": "get_weather", "arguments": {"city": "Paris"}}],
        }
    )
    example = render_example(record, tokenizer)
    prompt, answer = example.prompt_ids, example.answer_ids
    wrong = tokenizer("What is the weather?<|end|>", add_special_tokens=False)["input_ids"]
    split = len(answer) // 2
    common = dict(record_id="paris", tree=0, depth=0, chosen_value=1.0, rejected_value=0.0, answer_start=len(prompt))
    whole = Pair(
        node=0,
        prompt_ids=prompt,
        chosen_ids=answer,
        rejected_ids=wrong,
        chosen_visits=2,
        rejected_visits=1,
        divergence=len(prompt),
        **common,
    )
    middle = Pair(
        node=1,
        prompt_ids=prompt + answer[:split],
        chosen_ids=answer[split:-1],  # the rest of the answer, without its end token
        rejected_ids=wrong[:3],
        chosen_visits=1,
        rejected_visits=1,
        divergence=len(prompt) + split,
        **common,
    )
    return tokenizer, record, example, [whole, middle]


def _trl_tokenised(rows, tokenizer, tmp_path):
    """The ids TRL's DPOTrainer makes of exported rows (its own dataset preparation)."""
    args = DPOConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, disable_tqdm=True)
    model, reference = tiny_llama(len(tokenizer)), tiny_llama(len(tokenizer))
    trainer = DPOTrainer(model, reference, args=args, train_dataset=rows, processing_class=tokenizer)
    return trainer.train_dataset


def test_pairs_export_as_text_round_trips_through_trl(tmp_path):
    tokenizer, _, _, (whole, middle) = _searched()
    rows = pairs_to_trl([whole, middle], tokenizer)
    assert rows.column_names == ["record_id", "chosen_value", "rejected_value", "prompt", "chosen", "rejected"]
    assert rows[0]["chosen"].endswith(tokenizer.eos_token) and rows[0]["record_id"] == "paris"
    tokenised = _trl_tokenised(rows, tokenizer, tmp_path)
    assert tokenised[0]["prompt_ids"] == whole.prompt_ids
    assert tokenised[0]["chosen_ids"] == whole.chosen_ids and tokenised[0]["rejected_ids"] == whole.rejected_ids
    # A step that does not end the answer: TRL closes it with the end token (the docstring's caveat).
    assert tokenised[1]["prompt_ids"] == middle.prompt_ids
    assert tokenised[1]["chosen_ids"] == middle.chosen_ids + [tokenizer.eos_token_id]


def test_pairs_export_as_messages_renders_the_pairs_prompt(tmp_path):
    import json

    tokenizer, record, example, (whole, middle) = _searched()
    rows = pairs_to_trl([whole, middle], tokenizer, format="messages", records=[record])
    assert rows[0]["prompt"] == record.messages and json.loads(rows[0]["tools"]) == record.tools
    assert rows[0]["chosen"] == [{"role": "assistant", "content": '[get_weather(city="Paris")]'}]
    assert rows[0]["rejected"] == [{"role": "assistant", "content": "What is the weather?"}]
    # The middle step's message holds the answer so far and the step: the template then ends the turn there.
    assert rows[1]["chosen"][0]["content"] == tokenizer.decode(example.answer_ids[:-1])
    tokenised = _trl_tokenised(rows, tokenizer, tmp_path)
    assert tokenised[0]["prompt_ids"] == whole.prompt_ids and tokenised[0]["chosen_ids"] == whole.chosen_ids


def test_pairs_export_refusals():
    tokenizer, _, _, pairs = _searched()
    with pytest.raises(ValueError, match="format"):
        pairs_to_trl(pairs, tokenizer, format="chatml")
    with pytest.raises(ValueError, match="records"):
        pairs_to_trl(pairs, tokenizer, format="messages")
    with pytest.raises(ValueError, match="no record with id 'paris'"):
        pairs_to_trl(pairs, tokenizer, format="messages", records={})
    assert pairs_to_trl([], tokenizer).num_rows == 0


@pytest.mark.parametrize("package, old", [("transformers", "4.56.2"), ("trl", "1.9.0")])
def test_untested_old_releases_are_refused_at_import(monkeypatch, package, old):
    import importlib
    import importlib.util
    import sys

    monkeypatch.setattr(sys.modules[package], "__version__", old)
    spec = importlib.util.find_spec("rftfast.integrations.trl")
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(ImportError, match=f"{package} {old} \\(needs >= "):
        spec.loader.exec_module(module)
