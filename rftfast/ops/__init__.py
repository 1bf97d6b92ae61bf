"""The LM-head op: per-token log-probs from hidden states and the head weight, never materialising
`tokens × V` logits (logprob.py: validation, compaction, backend dispatch; head.py: the chunked torch
math; vocab_parallel.py: the head split by vocabulary across ranks). Knows nothing of tool use."""

from rftfast.ops.logprob import (
    IGNORE_INDEX,
    linear_logprobs,
    linear_logprobs_with_reference,
    sequence_lengths,
    sequence_logprobs,
)

__all__ = ["IGNORE_INDEX", "linear_logprobs", "linear_logprobs_with_reference", "sequence_lengths", "sequence_logprobs"]
