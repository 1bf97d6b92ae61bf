"""Self-describing checkpoints (issue 16, item 4): a model saved as a run saves it loads with transformers' Auto
classes alone, prompts through its own chat template exactly as rftfast trained it, and stops at its end token."""

import json

import pytest
import torch

from rftfast.config import RunConfig
from rftfast.data.chat import END, answer_content, fallback_prompt, render_example
from rftfast.data.importers import import_glaive, import_hermes, import_toolace
from rftfast.data.record import Call, Record
from rftfast.data.toolworld import generate
from rftfast.stages.state import Manifest, RunState
from rftfast.train.model import FALLBACK_CHAT_TEMPLATE, ModelConfig, load_policy
from tests.data.test_importers import GLAIVE, TOOLACE
from tests.data.test_real_shapes import HERMES_MULTI_TURN
from tests.support.tiny import TINY_SHAPE

# Earlier calls, tool results and values of every kind the pythonic form writes.
AWKWARD = Record(
    [
        {"role": "system", "content": "Today is 2026-11-23."},
        {"role": "user", "content": 'Plan "it"\nnow — ünïcode'},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                Call("plan", {"a": 1, "b": 2.5, "c": None, "d": [True, False, {"k": "v\t\\"}], "e": 1e-05}).to_openai()
            ],
        },
        {"role": "tool", "name": "plan", "content": '{"ok": true}'},
        {"role": "user", "content": ""},
    ],
    [
        {
            "type": "function",
            "function": {
                "name": "plan",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "a": {"type": "integer", "default": 3},
                        "b": {"type": ["number", "null"]},
                        "c": {"enum": ["x", 1, None]},
                        "d": {"type": "array", "items": {"type": "array", "items": {"type": "string"}}},
                        "e": {"type": "string", "pattern": "^[0-2][0-9]:[0-5][0-9]$"},
                        "f": {"type": "string", "format": "date"},
                        "g": {},
                    },
                    "required": ["a", "g"],
                },
            },
        },
        {"type": "function", "function": {"name": "bare", "description": "", "parameters": {}}},
    ],
    [Call("bare", {})],
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(records, the run's tokenizer, the checkpoint folder): the policy built and saved as `stage_data` does."""
    records = generate(24, seed=3) + [AWKWARD]
    records += import_hermes(HERMES_MULTI_TURN) + import_toolace(TOOLACE) + import_glaive(GLAIVE)
    corpus = [fallback_prompt(r.messages, r.tools) + answer_content(r) for r in records]
    cfg = RunConfig(out_dir=str(tmp_path_factory.mktemp("runs")), name="run", model=ModelConfig(**TINY_SHAPE))
    state = RunState(cfg, Manifest(cfg.run_dir / "manifest.json"))
    state.model, state.tokenizer = load_policy(cfg.model, corpus, seed=0)
    state.save_model("initial")
    return records, state.tokenizer, cfg.run_dir / "initial" / "model"


def test_the_chat_template_renders_the_ids_the_fallback_did(run):
    records, tokenizer, _ = run
    assert tokenizer.chat_template == FALLBACK_CHAT_TEMPLATE
    for record in records:
        through_template = render_example(record, tokenizer)
        fallback = render_example(record, tokenizer, use_chat_template=False)
        assert through_template.prompt_text == fallback.prompt_text, record.id
        assert through_template.answer_text == fallback.answer_text, record.id
        assert through_template.input_ids == fallback.input_ids, record.id
        assert through_template.answer_start == fallback.answer_start, record.id


def test_special_token_ids_agree_in_every_file(run):
    _, tokenizer, folder = run
    config = json.loads((folder / "config.json").read_text())
    generation = json.loads((folder / "generation_config.json").read_text())
    end, pad = tokenizer.convert_tokens_to_ids(END), tokenizer.convert_tokens_to_ids("<pad>")
    assert tokenizer.eos_token == END and tokenizer.eos_token_id == end and tokenizer.pad_token_id == pad
    for saved in (config, generation):
        assert saved.get("eos_token_id") == end
        assert saved.get("pad_token_id") == pad
        assert saved.get("bos_token_id") is None and tokenizer.bos_token_id is None  # the prompts start with none


def test_a_checkpoint_chats_with_tools_as_it_trained(run):
    from transformers import AutoTokenizer

    records, tokenizer, folder = run
    loaded = AutoTokenizer.from_pretrained(folder)
    for record in records:
        # The record's own messages (earlier calls as `tool_calls`) and tools (wrapped), as a user would pass them.
        prompt = loaded.apply_chat_template(
            record.messages, tools=record.tools, add_generation_prompt=True, tokenize=False
        )
        assert prompt == render_example(record, tokenizer).prompt_text, record.id
        ids = loaded.apply_chat_template(record.messages, tools=record.tools, add_generation_prompt=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        assert list(ids) == render_example(record, tokenizer).prompt_ids, record.id


def test_plain_generate_stops_at_the_end_token(run):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    records, _, folder = run
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    # An untrained model rarely says END; make END its only choice. With the blocks' outputs zeroed every position
    # holds its token's embedding, here e_0 for all; the head then scores END alone above zero.
    end = tokenizer.convert_tokens_to_ids(END)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[end, 0] = 1.0
    prompt = tokenizer.apply_chat_template(records[0].messages, tools=records[0].tools, add_generation_prompt=True)
    prompt = prompt["input_ids"] if hasattr(prompt, "keys") else prompt
    inputs = torch.tensor([prompt])
    output = model.generate(inputs, attention_mask=torch.ones_like(inputs), max_new_tokens=5)
    assert output[0, len(prompt) :].tolist() == [end]  # stopped at END, not 5 tokens on


def test_a_pretrained_policy_without_template_or_pad_gets_them(tmp_path, run):
    from transformers import AutoTokenizer

    from tests.support.tiny import tiny_llama

    _, tokenizer, folder = run
    bare = AutoTokenizer.from_pretrained(folder)
    bare.chat_template, bare.pad_token = None, None
    model = tiny_llama(len(bare))
    model.config.pad_token_id = model.generation_config.pad_token_id = None
    bare.save_pretrained(tmp_path / "bare")
    model.save_pretrained(tmp_path / "bare")
    model, loaded = load_policy(ModelConfig(path=str(tmp_path / "bare")), [], seed=0)
    assert loaded.chat_template == FALLBACK_CHAT_TEMPLATE
    assert loaded.pad_token_id == model.config.pad_token_id == model.generation_config.pad_token_id is not None
