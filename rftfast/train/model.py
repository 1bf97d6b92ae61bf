"""The policy: a pretrained checkpoint, or a tiny Llama and a tokenizer trained locally from scratch."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from rftfast.config import ModelConfig
from rftfast.data.chat import END

# The fallback chat template's tags are single tokens, so the model sees turn structure at once.
SPECIAL_TOKENS = ["<pad>", END, "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>"]


def train_tokenizer(corpus: Iterable[str], vocab_size: int):
    """A byte-level BPE (every text encodes) trained on `corpus`, as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=END, pad_token="<pad>")


def build_tiny_llama(cfg: ModelConfig, vocab_size: int, seed: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                         num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                         num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=max(cfg.max_length, 512),
                         tie_word_embeddings=cfg.tie_embeddings)
    return LlamaForCausalLM(config)


def load_policy(cfg: ModelConfig, corpus: Iterable[str], seed: int, device: str = "cpu"):
    """(model, tokenizer): from `cfg.path` if set, else built from scratch on `corpus`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg.path:
        tokenizer = AutoTokenizer.from_pretrained(cfg.path)
        model = AutoModelForCausalLM.from_pretrained(cfg.path)
    else:
        tokenizer = train_tokenizer(corpus, cfg.vocab_size)
        model = build_tiny_llama(cfg, len(tokenizer), seed)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer
