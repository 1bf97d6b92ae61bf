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
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=END, pad_token="<pad>")


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
    )
    return LlamaForCausalLM(config)


def load_policy(
    cfg: ModelConfig, corpus: Iterable[str], seed: int, device: str = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
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
