"""What the training losses read from a causal LM: its last hidden states and its LM head's weight.

The head is applied by the fused log-prob kernels (`rftfast.ops.logprob`), so no stage asks the model for
logits; SFT, deficiency scoring and preference optimisation all read the model through these two.
"""

from __future__ import annotations

import torch

from rftfast.train.runtime import parallel_wrapped, unwrap


def hidden_states(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, **inputs
) -> torch.Tensor:
    """The last hidden states [B, T, H] (after the final norm); the LM head is applied by the fused kernels.

    `inputs` go to the model as they are (`position_ids`, and what a packed batch's attention reads).
    A DDP- or FSDP2-wrapped model is called through its own forward, which the wrappers need to see
    (with `logits_to_keep=1`, so the head's matmul covers one position per row); a plain or peft model
    through its decoder, which keeps no other layer's activations.
    """
    inputs.update(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    if parallel_wrapped(model):
        return model(**inputs, output_hidden_states=True, logits_to_keep=1).hidden_states[-1]
    return model.get_decoder()(**inputs).last_hidden_state


def lm_head_weight(model: torch.nn.Module, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The LM head's weight, cast (differentiably) to `dtype`: the hidden states' under bf16 autocast."""
    weight = unwrap(model).get_output_embeddings().weight
    if hasattr(weight, "full_tensor"):
        # FSDP2 leaves the root's weights gathered after its forward; a DTensor here means the head was
        # read outside that window, and gathering it ourselves would not reduce its gradient.
        raise RuntimeError("the LM head weight is still sharded: run the model's forward before reading it")
    return weight if dtype is None else weight.to(dtype)
