"""Generation for the tree search: the `Generator` contract, its backends, and the prefix KV cache they share.

- `base`: the contract, `Generator` (`expand`, `logprobs`, `data_parallel`, `close`, `stats`), with
  `ExpandRequest` in, `Child` out and `GenerationStats`.
- `transformers_backend.TransformersGenerator`: any transformers causal LM, prefix KV reused through
  `prefix_cache.PrefixCache` (a C++ radix tree, `rftfast._C`) and a `kv_pool.KVPool` of KV blocks.
- `vllm_backend.VLLMGenerator`: vLLM with its own prefix caching (vLLM imported only when used).

The backends stop children at the step ends `rftfast.answer.StepScanner` finds.
"""

from rftfast.generation.base import Child, ExpandRequest, GenerationStats, Generator
from rftfast.generation.kv_pool import KVPool
from rftfast.generation.prefix_cache import (
    CacheStats,
    CopyOnWrite,
    Inserted,
    Match,
    PrefixCache,
    depth_first_order,
)
from rftfast.generation.prefix_cache_ref import ReferencePrefixCache
from rftfast.generation.transformers_backend import TransformersGenerator
from rftfast.generation.vllm_backend import VLLMGenerator

__all__ = [
    "CacheStats",
    "Child",
    "CopyOnWrite",
    "ExpandRequest",
    "GenerationStats",
    "Generator",
    "Inserted",
    "KVPool",
    "Match",
    "PrefixCache",
    "ReferencePrefixCache",
    "TransformersGenerator",
    "VLLMGenerator",
    "depth_first_order",
]
