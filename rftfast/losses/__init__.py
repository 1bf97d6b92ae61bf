"""Preference objectives on sequence log-probs, and the fused module that feeds them from hidden states."""

from rftfast.losses.fused_dpo import FusedDPOLoss, PreferenceOutput
from rftfast.losses.objectives import (
    BATCH_COUPLED,
    OBJECTIVES,
    REFERENCE_FREE,
    ObjectiveParams,
    Pairs,
    preference_loss,
    preference_losses,
)

__all__ = [
    "BATCH_COUPLED",
    "OBJECTIVES",
    "REFERENCE_FREE",
    "FusedDPOLoss",
    "ObjectiveParams",
    "Pairs",
    "PreferenceOutput",
    "preference_loss",
    "preference_losses",
]
