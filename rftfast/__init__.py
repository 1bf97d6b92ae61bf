"""rftfast: iterative reinforced fine-tuning for tool-using LLMs, built on fused head kernels."""

from rftfast.losses import FusedDPOLoss, PreferenceOutput, preference_loss
from rftfast.ops.logprob import (
    linear_logprobs,
    linear_logprobs_with_reference,
    sequence_lengths,
    sequence_logprobs,
)

__version__ = "0.1.0"

__all__ = [
    "FusedDPOLoss",
    "PreferenceOutput",
    "preference_loss",
    "linear_logprobs",
    "linear_logprobs_with_reference",
    "sequence_lengths",
    "sequence_logprobs",
]
