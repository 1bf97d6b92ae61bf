"""Padding examples into batches for causal-LM steps (labels only on the answer)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rftfast.ops.logprob import IGNORE_INDEX


def pad_batch(
    sequences: Sequence[Sequence[int]], label_starts: Sequence[int], pad_id: int, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Right-padded `input_ids`, `attention_mask`, and next-token `labels` aligned with the hidden states.

    `labels[b, t]` is token t + 1 of sequence b when that token belongs to the answer (index >=
    `label_starts[b]`), else IGNORE_INDEX. The labels are already shifted: the hidden state at position t is
    scored on `labels[b, t]`, so hidden states and labels go to the loss as they are.
    """
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    for b, (seq, start) in enumerate(zip(sequences, label_starts, strict=True)):
        n = len(seq)
        ids[b, :n] = torch.tensor(seq, dtype=torch.long)
        mask[b, :n] = 1
        targets = torch.tensor(seq[max(start, 1) :], dtype=torch.long)
        labels[b, max(start, 1) - 1 : n - 1] = targets
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}
