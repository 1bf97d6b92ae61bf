"""Preference optimisation on step-level pairs with `FusedDPOLoss`.

A pair is a shared prefix (prompt + the answer so far) and two continuations that differ in one
step. Each continuation is scored on its own tokens only. The reference log-probs are computed
once per iteration, in one no-grad pass, before the policy moves (or from a frozen copy per step).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence

import torch

from rftfast.config import PreferenceConfig
from rftfast.logprob import sequence_logprobs
from rftfast.losses import FusedDPOLoss
from rftfast.train.batching import pad_batch
from rftfast.train.sft import cosine_lr, hidden_states, lm_head_weight


def pair_batch(pairs: Sequence[dict], pad_id: int, device="cpu") -> dict[str, torch.Tensor]:
    """Chosen rows first, then rejected rows (the layout FusedDPOLoss expects)."""
    seqs = [p["prompt_ids"] + p["chosen_ids"] for p in pairs] + [p["prompt_ids"] + p["rejected_ids"] for p in pairs]
    starts = [len(p["prompt_ids"]) for p in pairs] * 2
    return pad_batch(seqs, starts, pad_id, device)


@torch.no_grad()
def reference_logps(model, pairs: Sequence[dict], pad_id: int, batch_size: int, device="cpu") -> torch.Tensor:
    """[P, 2] summed log-probs of (chosen, rejected) continuations under `model`, in one pass."""
    out = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start: start + batch_size]
        batch = pair_batch(chunk, pad_id, device)
        hidden = hidden_states(model, batch["input_ids"], batch["attention_mask"])
        seq = sequence_logprobs(hidden, lm_head_weight(model), batch["labels"])
        out.append(torch.stack([seq[: len(chunk)], seq[len(chunk):]], 1))
    return torch.cat(out).cpu()


def train_preference(model, tokenizer, pairs: Sequence[dict], cfg: PreferenceConfig, seed: int,
                     device: str = "cpu") -> list[dict]:
    """Optimise `model` on `pairs`; returns the metrics of every step (TRL's names)."""
    from tqdm.auto import tqdm

    if not pairs:
        return []
    torch.manual_seed(seed)
    pad = tokenizer.pad_token_id
    reference = None
    ref = None
    if cfg.reference == "precomputed":
        ref = reference_logps(model, pairs, pad, cfg.batch_size, device)
    else:
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    loss_fn = FusedDPOLoss(cfg.loss_type, beta=cfg.beta, gamma=cfg.gamma, nll_weight=cfg.nll_weight)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    steps = max(1, round(cfg.epochs * len(pairs) / cfg.batch_size))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_lr(s, steps, max(1, steps // 10)))
    rng = random.Random(seed)
    order: list[int] = []
    history = []
    model.train()
    for _ in tqdm(range(steps), desc="preference optimisation", unit="step"):
        idx = []
        for _ in range(min(cfg.batch_size, len(pairs))):
            if not order:
                order = list(range(len(pairs)))
                rng.shuffle(order)
            idx.append(order.pop())
        chunk = [pairs[i] for i in idx]
        batch = pair_batch(chunk, pad, device)
        hidden = hidden_states(model, batch["input_ids"], batch["attention_mask"])
        if ref is not None:
            kwargs = {"ref_logps": torch.cat([ref[idx, 0], ref[idx, 1]]).to(device)}
        else:
            with torch.no_grad():
                kwargs = {"ref_hidden": hidden_states(reference, batch["input_ids"], batch["attention_mask"]),
                          "ref_weight": lm_head_weight(reference)}
        out = loss_fn(hidden, lm_head_weight(model), batch["labels"], **kwargs)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        history.append(out.metrics())
    model.eval()
    return history
