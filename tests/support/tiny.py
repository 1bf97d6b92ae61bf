"""Tiny models and tokenizers built locally, by the package's own builders: nothing is downloaded."""

from functools import lru_cache

DEFAULT_CORPUS = ('[get_weather(city="Paris", unit="celsius")]', "What is the weather in Paris?")


@lru_cache(maxsize=4)
def tiny_tokenizer(corpus: tuple[str, ...] = (), vocab_size: int = 400):
    """The run's byte-level BPE (any text encodes), trained on three copies of `corpus`."""
    from rftfast.train.model import train_tokenizer

    return train_tokenizer(list(corpus or DEFAULT_CORPUS) * 3, vocab_size)


def tiny_llama(vocab_size: int, seed: int = 0):
    """A 2-layer, 32-wide Llama with untied embeddings, seeded."""
    from rftfast.train.model import ModelConfig, build_tiny_llama

    shape = ModelConfig(
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        max_length=2048,
        tie_embeddings=False,
    )
    return build_tiny_llama(shape, vocab_size, seed)
