"""TRL's own DPO loss code as an oracle.

TRL 1.x computes the DPO objectives inside `DPOTrainer._compute_loss`, after the model call. We run
that method for real on a stand-in trainer whose "model" returns prescribed per-token log-probs,
so every formula comes from TRL's source, not from a copy of it.
"""

from types import SimpleNamespace

import torch

trl_dpo = __import__("pytest").importorskip("trl.trainer.dpo_trainer")


class _Accelerator:
    device = torch.device("cpu")

    @staticmethod
    def gather_for_metrics(x):
        return x

    @staticmethod
    def gather(x):
        return x


def trl_dpo_loss(
    chosen,
    rejected,
    ref_chosen,
    ref_rejected,
    chosen_len,
    rejected_len,
    *,
    loss_type,
    loss_weights=None,
    beta=0.1,
    label_smoothing=0.0,
    discopop_tau=0.05,
):
    """TRL's loss for sequence log-probs [P] (float64 tensors that may require grad)."""
    p = chosen.shape[0]
    width = int(max(chosen_len.max(), rejected_len.max())) + 1
    # Completion tokens sit at positions 1..len; TRL drops the first position when it shifts the mask.
    lengths = torch.cat([chosen_len, rejected_len]).long()
    completion_mask = (torch.arange(width)[None, :] >= 1) & (torch.arange(width)[None, :] <= lengths[:, None])
    shift_mask = completion_mask[:, 1:]
    totals = torch.cat([chosen, rejected])
    # Spread each total evenly over its completion tokens: TRL sums them back.
    per_token = shift_mask.to(totals.dtype) * (totals / lengths.clamp(min=1))[:, None]

    def model(**_):
        zeros = torch.zeros_like(per_token)
        return SimpleNamespace(
            log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=torch.zeros_like(shift_mask)
        )

    model.training = True
    types = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    trainer = object.__new__(trl_dpo.DPOTrainer)
    trainer.__dict__.update(
        model=model,
        accelerator=_Accelerator(),
        aux_loss_enabled=False,
        ld_alpha=None,
        precompute_ref_logps=True,
        f_divergence_type="reverse_kl",
        loss_types=types,
        loss_weights=loss_weights or [1.0] * len(types),
        beta=beta,
        label_smoothing=label_smoothing,
        use_weighting=False,
        _total_train_tokens=0,
        _tp_size=1,
        args=SimpleNamespace(discopop_tau=discopop_tau),
        _metrics={"train": __import__("collections").defaultdict(list)},
    )
    inputs = {
        "input_ids": torch.zeros(2 * p, width, dtype=torch.long),
        "attention_mask": torch.ones(2 * p, width, dtype=torch.long),
        "completion_mask": completion_mask.long(),
        "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }
    return trl_dpo.DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)
