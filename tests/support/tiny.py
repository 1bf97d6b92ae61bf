"""Tiny models and tokenizers built locally, by the package's own builders: nothing is downloaded."""

from functools import lru_cache

DEFAULT_CORPUS = ('[get_weather(city="Paris", unit="celsius")]', "What is the weather in Paris?")


@lru_cache(maxsize=4)
def tiny_tokenizer(corpus: tuple[str, ...] = (), vocab_size: int = 400):
    """The run's byte-level BPE (any text encodes), trained on three copies of `corpus`."""
    from rftfast.train.model import train_tokenizer

    return train_tokenizer(list(corpus or DEFAULT_CORPUS) * 3, vocab_size)


# The tiny models' shape: 2 layers, 32 wide, grouped-query attention (4 heads, 2 KV heads), untied embeddings.
TINY_SHAPE = dict(
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    max_length=2048,
    tie_embeddings=False,
)


def tiny_llama(vocab_size: int, seed: int = 0):
    """A tiny Llama (`TINY_SHAPE`), seeded, by the run's own builder."""
    from rftfast.train.model import ModelConfig, build_tiny_llama

    return build_tiny_llama(ModelConfig(**TINY_SHAPE), vocab_size, seed)


def tiny_qwen2(vocab_size: int, seed: int = 0):
    """A tiny Qwen2 of the same shape (biased q/k/v projections): a second architecture for the tests
    that must hold for any causal LM."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    s = TINY_SHAPE
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=s["hidden_size"],
        intermediate_size=s["intermediate_size"],
        num_hidden_layers=s["num_layers"],
        num_attention_heads=s["num_heads"],
        num_key_value_heads=s["num_kv_heads"],
        max_position_embeddings=s["max_length"],
        tie_word_embeddings=s["tie_embeddings"],
    )
    return Qwen2ForCausalLM(config)
