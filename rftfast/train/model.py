"""The policy: a pretrained checkpoint, or a tiny Llama and a tokenizer trained locally from scratch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from rftfast.data.chat import END

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase, PreTrainedTokenizerFast

# The fallback chat template's tags are single tokens, so the model sees turn structure at once.
SPECIAL_TOKENS = ["<pad>", END, "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]
# The locally trained tokenizer's smallest vocabulary: its 256 byte tokens and the special tokens.
MIN_VOCAB = 256 + len(SPECIAL_TOKENS)
# The trainer gives the special tokens the first ids, in order; the tiny Llama's config names these two. An
# answer ends with END, so it is the end-of-sequence token; the prompts start with no BOS, so there is none.
PAD_ID, END_ID = SPECIAL_TOKENS.index("<pad>"), SPECIAL_TOKENS.index(END)

# `rftfast.data.chat.fallback_prompt` as a Jinja chat template, so that a checkpoint says how to prompt it:
# `apply_chat_template(messages, tools=..., add_generation_prompt=True)` gives the prompt the model trained on,
# byte for byte (tests/train/test_checkpoint.py holds them equal), and `render_example` renders through it to
# the same token ids. Tools come wrapped ({"type": "function", "function": ...}) or bare; earlier calls as
# `tool_calls` with dict arguments, printed in the pythonic form of `rftfast.answer.render_calls`. Its strings go
# through `tojson`, which agrees with `quote_string` except on characters neither printable nor escaped the same
# way (\b, \f, other control characters, non-printable unicode such as U+00A0: `quote_string` writes \uXXXX).
# Training meets that difference only on earlier calls holding such characters (`render_example` passes them as
# `tool_calls`, so the prompt is the template's: what the checkpoint serves; tests/data/test_chat.py pins it).
# Every tag strips the template's own whitespace (`{%-`, `-%}`): only quoted text reaches the output.
FALLBACK_CHAT_TEMPLATE = """
{%- macro type_text(schema) -%}
    {%- if 'enum' in schema -%}
        {%- for value in schema['enum'] -%}{{- '|' if not loop.first -}}{{- value | tojson -}}{%- endfor -%}
    {%- else -%}
        {%- set kind = schema['type'] if 'type' in schema else 'any' -%}
        {%- if kind == 'array' and 'items' in schema and schema['items'] is mapping -%}
            {{- 'array[' ~ type_text(schema['items']) ~ ']' -}}
        {%- else -%}
            {%- set pattern = schema['pattern'] if 'pattern' in schema else '' -%}
            {%- set format = schema['format'] if 'format' in schema and schema['format'] else none -%}
            {%- set format = format if format else ('HH:MM' if '[0-5]' in pattern else none) -%}
            {{- kind ~ ' (' ~ format ~ ')' if format else kind ~ '' -}}
        {%- endif -%}
    {%- endif -%}
{%- endmacro -%}

{%- macro signature(tool) -%}
    {%- set fn = tool['function'] if 'function' in tool and tool['function'] is mapping else tool -%}
    {%- set params = fn['parameters'] if 'parameters' in fn else {} -%}
    {%- set required = params['required'] if 'required' in params else [] -%}
    {%- set properties = params['properties'] if 'properties' in params else {} -%}
    {{- fn['name'] ~ '(' -}}
    {%- for name in properties -%}
        {%- set schema = properties[name] -%}
        {{- ', ' if not loop.first -}}
        {{- name ~ ('' if name in required else '?') ~ ': ' ~ type_text(schema) -}}
        {%- if 'default' in schema -%}{{- ' = ' ~ (schema['default'] | tojson) -}}{%- endif -%}
    {%- endfor -%}
    {{- ')' -}}
    {%- if 'description' in fn and fn['description'] -%}{{- '  # ' ~ fn['description'] -}}{%- endif -%}
{%- endmacro -%}

{%- macro literal(value) -%}
    {%- if value is none -%}{{- 'None' -}}
    {%- elif value is boolean -%}{{- 'True' if value else 'False' -}}
    {%- elif value is string -%}{{- value | tojson -}}
    {%- elif value is number -%}{{- value ~ '' -}}
    {%- elif value is mapping -%}
        {{- '{' -}}
        {%- for key in value -%}
            {{- ', ' if not loop.first -}}{{- key | tojson -}}{{- ': ' -}}{{- literal(value[key]) -}}
        {%- endfor -%}
        {{- '}' -}}
    {%- else -%}
        {{- '[' -}}
        {%- for item in value -%}{{- ', ' if not loop.first -}}{{- literal(item) -}}{%- endfor -%}
        {{- ']' -}}
    {%- endif -%}
{%- endmacro -%}

{%- macro content(message) -%}
    {%- if 'tool_calls' in message and message['tool_calls'] -%}
        {{- '[' -}}
        {%- for entry in message['tool_calls'] -%}
            {%- set call = entry['function'] if 'function' in entry and entry['function'] is mapping else entry -%}
            {%- set arguments = call['arguments'] if 'arguments' in call else {} -%}
            {%- if arguments is string -%}
                {{- raise_exception('tool_calls: give the arguments as a dict, not a JSON string') -}}
            {%- endif -%}
            {{- ', ' if not loop.first -}}{{- call['name'] ~ '(' -}}
            {%- for key in arguments -%}
                {{- ', ' if not loop.first -}}{{- key ~ '=' -}}{{- literal(arguments[key]) -}}
            {%- endfor -%}
            {{- ')' -}}
        {%- endfor -%}
        {{- ']' -}}
    {%- elif 'content' in message and message['content'] -%}
        {{- message['content'] if message['content'] is string else message['content'] | tojson -}}
    {%- endif -%}
{%- endmacro -%}

{%- set systems = messages | selectattr('role', 'equalto', 'system') | list -%}
{{- '<|system|>\n' -}}
{%- if systems -%}{{- content(systems[0]) -}}{%- endif -%}
{%- if tools -%}
    {{- '\n\nYou can call these functions:\n' -}}
    {%- for tool in tools -%}{{- '\n' if not loop.first -}}{{- signature(tool) -}}{%- endfor -%}
    {{- '\nAnswer with the calls as [name(param=value, ...)], or in plain text when no function helps.' -}}
{%- endif -%}
{%- for message in messages if message['role'] != 'system' -%}
    {{- '\n<|' ~ message['role'] ~ '|>\n' -}}{{- content(message) -}}
    {%- if message['role'] == 'assistant' -%}{{- '<|end|>' -}}{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '\n<|assistant|>\n' -}}{%- endif -%}
"""


@dataclass
class ModelConfig:
    """The policy: a checkpoint to load, or the shape of the tiny Llama built from scratch."""

    path: str | None = None  # a local path or hub id for from_pretrained; None builds a tiny Llama from scratch
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384
    vocab_size: int = 4096  # of the tokenizer trained locally: whole words, so values copy as whole tokens
    tie_embeddings: bool = True  # copying a prompt token into the answer is then one attention lookup
    max_length: int = 512  # records whose prompt + answer is longer are skipped (and counted)
    # How the model writes its calls, in training, search and evaluation alike: None, its chat template's own
    # format (`rftfast.data.chat.call_format_of`; pythonic under the fallback template), or one of
    # "pythonic", "json", "hermes" for a template whose format is not recognised.
    call_format: str | None = None


def train_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE (every text encodes) trained on `corpus`, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus, trainer)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(len(SPECIAL_TOKENS))), "PAD_ID, END_ID"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=END, pad_token=SPECIAL_TOKENS[PAD_ID])
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return tokenizer


def build_tiny_llama(cfg: ModelConfig, vocab_size: int, seed: int) -> LlamaForCausalLM:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=max(cfg.max_length, 512),
        tie_word_embeddings=cfg.tie_embeddings,
        # The ids of `train_tokenizer`'s tokens, which config.json and generation_config.json then carry:
        # LlamaConfig's defaults (bos 1, eos 2) would name END as BOS and <|system|> as the end.
        bos_token_id=None,
        eos_token_id=END_ID,
        pad_token_id=PAD_ID,
    )
    return LlamaForCausalLM(config)


def load_policy(
    cfg: ModelConfig, corpus: Iterable[str], seed: int, device: str = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer): from `cfg.path` if set, else built from scratch on `corpus`.

    Either way the tokenizer has a pad token and a chat template (the fallback one if it had none: the one the
    run renders with), and the model's config and generation config the tokenizer's pad id where they had
    none, so that the checkpoints a run saves describe themselves.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg.path:
        tokenizer = AutoTokenizer.from_pretrained(cfg.path)
        model = AutoModelForCausalLM.from_pretrained(cfg.path)
    else:
        tokenizer = train_tokenizer(corpus, cfg.vocab_size)
        model = build_tiny_llama(cfg, len(tokenizer), seed)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    for config in (model.config, model.generation_config):
        if config is not None and config.pad_token_id is None:
            config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer
