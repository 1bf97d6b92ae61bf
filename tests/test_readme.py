"""The README's example runs as written, and agrees with a transformers model's own logits."""

import re
from pathlib import Path

import pytest
import torch

from tests.support.reference import assert_close
from tests.support.tiny import tiny_llama

README = Path(__file__).resolve().parents[1] / "README.md"


def _first_python_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    return blocks[0]


def test_readme_example_trains_a_tiny_llama(capsys):
    pytest.importorskip("transformers")
    namespace = {}
    exec(compile(_first_python_block(), str(README), "exec"), namespace)
    history = namespace["history"]
    assert len(history) == 5
    assert history[-1]["loss"] < history[0]["loss"], "five DPO steps on one batch must lower its loss"
    assert history[-1]["rewards/margins"] > history[0]["rewards/margins"]
    assert "rewards/accuracies" in history[-1]
    assert capsys.readouterr().out.count("\n") == 5


def test_loss_from_hidden_states_matches_the_models_logits():
    transformers = pytest.importorskip("transformers")
    from rftfast import FusedDPOLoss

    torch.manual_seed(1)
    config = transformers.LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    policy, reference = transformers.LlamaForCausalLM(config), transformers.LlamaForCausalLM(config).eval()
    input_ids = torch.randint(0, 96, (4, 12))
    labels = input_ids[:, 1:].clone()
    labels[:, :4] = -100
    hidden = policy.model(input_ids).last_hidden_state[:, :-1]
    with torch.no_grad():
        ref_hidden = reference.model(input_ids).last_hidden_state[:, :-1]
    out = FusedDPOLoss("sigmoid", beta=0.2)(
        hidden, policy.lm_head.weight, labels, ref_hidden=ref_hidden, ref_weight=reference.lm_head.weight
    )
    out.loss.backward()
    fused_grad = policy.model.layers[0].mlp.up_proj.weight.grad.clone()
    policy.zero_grad()

    def seq_logps(model):  # what TRL does: the model's own logits, log_softmax, gather
        logits = model(input_ids).logits[:, :-1].float()
        lp = logits.log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
        return (lp * (labels != -100)).sum(-1)

    pol = seq_logps(policy)
    with torch.no_grad():
        ref = seq_logps(reference)
    delta = (pol[:2] - ref[:2]) - (pol[2:] - ref[2:])
    naive = -torch.nn.functional.logsigmoid(0.2 * delta).mean()
    naive.backward()
    assert_close(out.loss, naive, atol=1e-5, what="loss vs model logits")
    assert_close(
        fused_grad, policy.model.layers[0].mlp.up_proj.weight.grad, atol=1e-5, what="gradient reaching the first layer"
    )


def test_readme_packing_example_runs_on_a_tiny_model():
    pytest.importorskip("transformers")
    block = next(b for b in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S) if "pack_trees(" in b)
    model = tiny_llama(64)
    namespace = {"model": model, "prompt": [1, 5, 9, 13, 2], "chosen": [7, 8], "rejected": [7, 11, 3]}
    exec(compile(block, str(README), "exec"), namespace)
    assert namespace["out"].loss.isfinite()
    assert model.lm_head.weight.grad is not None and model.config._attn_implementation == "sdpa"
