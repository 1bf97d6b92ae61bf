"""TRL's `DPOTrainer` with rftfast's fused preference loss, and search pairs as a TRL preference dataset.

`FusedDPOTrainer` is `trl.DPOTrainer` (written against TRL 1.16) with one difference: the loss and the
reference log-probs come from the policy's last hidden states and its LM-head weight through
`rftfast.FusedDPOLoss` and `rftfast.sequence_logprobs`, which never hold `tokens × V` logits beyond one
group of pairs. Everything else (data preparation, collation, the reference model or the disabled PEFT
adapter, precomputed reference log-probs, logging, checkpoints) is TRL's own code. It overrides two public
hooks, `compute_loss` and `compute_ref_log_probs`, and no private method.

Matched: every TRL DPO loss type but `aot_unpaired` (`sigmoid`, `hinge`, `ipo`, `exo_pair`, `nca_pair`,
`robust`, `bco_pair`, `sppo_hard`, `aot`, `apo_zero`, `apo_down`, `discopop`, `sigmoid_norm`, `sft`), a list
of them with `loss_weights`, `beta`, `label_smoothing` where TRL reads it (`robust`, `exo_pair`, `aot`),
`discopop_tau`, a reference model, precomputed reference log-probs, PEFT without a reference (the adapter
disabled, or TRL's frozen "ref" adapter), `sync_ref_model`, Gemma-style final-logit softcapping, and the metrics
`rewards/{chosen,rejected,accuracies,margins}`, `logps/{chosen,rejected}`, `logits/{chosen,rejected}` and
`num_tokens` under TRL's names.

Not logged: `entropy` and `mean_token_accuracy`. Both need every token's whole distribution (its entropy, its
argmax), which is one more pass over the vocabulary for each token; the fused loss never needs one.

Refused with a ValueError when the trainer is built, each naming the option: `aot_unpaired`; `label_smoothing`
with `sigmoid` (TRL 1.16 ignores it there, rftfast's sigmoid applies it as conservative DPO: the two losses would
differ); `ld_alpha`, `f_divergence_type` other than "reverse_kl" and `use_weighting` (WPO), which reweigh tokens
or scores outside the sequence log-probs the fused loss works on; a MoE router auxiliary loss
(`router_aux_loss_coef` must be 0); prompt-learning PEFT (virtual tokens the decoder alone does not see);
vision-language processors; DeepSpeed ZeRO-3 (a partitioned head weight); and models that scale their logits
(`logit_scale`, `logits_scaling`, `output_multiplier`, `lm_head_multiplier` other than 1).

`pairs_to_trl` exports search pairs (`rftfast.mcts.Pair`) as TRL's prompt/chosen/rejected rows, as text or as
conversational messages.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import datasets
import torch
import transformers
import trl

# Tested from TRL 1.15 with transformers 5.0 (`.ci/deps_ends.sh trl-lower`): older pairs import, but their
# private trainer internals differ (TRL 1.15 on transformers 4.56-4.57 failed 9 of tests/integrations'
# tests), so they are refused here, where a user meets them, rather than mid-training.
_TOO_OLD = [
    f"{name} {module.__version__} (needs >= {low})"
    for name, module, low in (("transformers", transformers, "5.0"), ("trl", trl, "1.15"))
    if torch.torch_version.TorchVersion(module.__version__.split("+")[0]) < low
]
if _TOO_OLD:
    raise ImportError(
        f"rftfast.integrations.trl: {', '.join(_TOO_OLD)}; pip install 'rftfast[trl]' installs a tested pair"
    )

from accelerate.utils import is_peft_model  # noqa: E402
from transformers import ProcessorMixin  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402
from trl.models.utils import disable_gradient_checkpointing  # noqa: E402
from trl.trainer.utils import use_adapter  # noqa: E402

from rftfast.losses import OBJECTIVES, REFERENCE_FREE, FusedDPOLoss, PreferenceOutput  # noqa: E402
from rftfast.ops import IGNORE_INDEX, sequence_logprobs  # noqa: E402
from rftfast.train.model_io import hidden_states, lm_head_weight  # noqa: E402
from rftfast.train.runtime import unwrap  # noqa: E402

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from rftfast.data.record import Record
    from rftfast.mcts import Pair

# Batch keys of TRL's preference collator that are not model inputs.
NON_MODEL_KEYS = frozenset({"completion_mask", "ref_chosen_logps", "ref_rejected_logps"})
# TRL's DPOTrainer loss types the fused loss reproduces ('sft' as its NLL term). SimPO and ORPO, also objectives of
# `FusedDPOLoss`, are TRL's CPO and ORPO trainers' losses, not DPOTrainer's.
DPO_LOSS_TYPES = frozenset(OBJECTIVES) - REFERENCE_FREE | {"sft"}
# Config fields by which some architectures scale their logits before the softmax (Cohere, Granite, Falcon-H1,
# ...). The fused head applies no such scale, so these models are refused rather than trained on other logits.
LOGIT_SCALE_FIELDS = ("logit_scale", "logits_scaling", "output_multiplier", "lm_head_multiplier")


class FusedDPOTrainer(DPOTrainer):
    """`trl.DPOTrainer` whose loss is `rftfast.FusedDPOLoss` on the policy's hidden states: same arguments, same
    loss and gradients (see the module docstring for what is matched and what is refused).

    Args:
        model, ref_model, args, **kwargs: as for `trl.DPOTrainer`.
        strategy: `FusedDPOLoss`'s strategy: "auto" (fused where the objective allows, recompute for `aot`),
            "fused" or "recompute".
    """

    def __init__(self, model, ref_model=None, args: DPOConfig | None = None, *more, strategy: str = "auto", **kwargs):
        if args is not None:
            check_supported(args)  # before TRL tokenises the data and precomputes reference log-probs
        peft_config = kwargs.get("peft_config")
        if peft_config is not None and getattr(peft_config, "is_prompt_learning", False):
            raise ValueError(_PROMPT_LEARNING)
        super().__init__(model, ref_model, args, *more, **kwargs)
        if isinstance(self.processing_class, ProcessorMixin):
            raise ValueError(
                "processing_class: vision-language processors are not supported (the fused loss reads the text "
                "decoder's hidden states only); use trl.DPOTrainer"
            )
        if self.aux_loss_enabled:
            raise ValueError(
                "router_aux_loss_coef: the MoE load-balancing loss is not added by the fused loss; set "
                "router_aux_loss_coef=0.0 in DPOConfig, or use trl.DPOTrainer"
            )
        if is_peft_model(self.model) and unwrap(self.model).active_peft_config.is_prompt_learning:
            raise ValueError(_PROMPT_LEARNING)
        self.preference_loss = preference_loss_for(self.args, head_options_of(self.model), strategy=strategy)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The fused loss of one padded batch (chosen rows first, then rejected), and TRL's metrics."""
        mode = "train" if self.model.training else "eval"
        labels = next_token_labels(inputs["input_ids"], inputs["completion_mask"])
        # Mixed precision: accelerate autocasts the model's forward, which the decoder call bypasses, so it is
        # autocast here; the head runs outside, on the hidden states' dtype, as in rftfast's own trainer.
        with self.accelerator.autocast():
            hidden = hidden_states(model, **model_inputs(inputs))
        weight, bias = head_parameters(model, hidden.dtype)
        if self.precompute_ref_logps:
            ref_logps = (inputs["ref_chosen_logps"], inputs["ref_rejected_logps"])
        else:
            ref_logps = self.compute_ref_log_probs(model if self.ref_model is None else self.ref_model, inputs)
        out = self.preference_loss(hidden, weight, labels, ref_logps=ref_logps, bias=bias)
        linear_head = self.preference_loss.softcap is None
        self._record_metrics(mode, out, inputs, mean_logit_sums(hidden, weight, bias, labels) if linear_head else None)
        if return_outputs:
            # Only `compute_metrics` asks for outputs, and it wants logits: one plain forward, as TRL does.
            with torch.no_grad():
                return out.loss, model(**model_inputs(inputs))
        return out.loss

    def compute_ref_log_probs(self, model, inputs):
        """Reference sequence log-probs (chosen [B], rejected [B]) of one padded batch, by rftfast's head.

        TRL calls this to precompute the reference; `compute_loss` calls it otherwise. Without a reference
        model a PEFT policy is its own reference, adapters disabled (or TRL's frozen "ref" adapter active).
        """
        adapter = contextlib.nullcontext()
        if self.ref_model is None and is_peft_model(self.model):
            peft_model = self.accelerator.unwrap_model(self.model)
            adapter = use_adapter(peft_model, adapter_name="ref" if "ref" in peft_model.peft_config else None)
        # Under no_grad there is nothing to checkpoint (and reentrant checkpointing warns): off here, as in TRL.
        no_checkpointing = disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs)
        with torch.no_grad(), no_checkpointing, adapter:
            with self.accelerator.autocast():
                hidden = hidden_states(model, **model_inputs(inputs))
            weight, bias = head_parameters(model, hidden.dtype)
            labels = next_token_labels(inputs["input_ids"], inputs["completion_mask"])
            logps = sequence_logprobs(hidden, weight, labels, bias=bias, **head_options_of(model))
        return logps.chunk(2)

    def _record_metrics(self, mode: str, out: PreferenceOutput, inputs, logit_sums: torch.Tensor | None) -> None:
        # The one place that touches DPOTrainer's private state: `log` averages and reports `self._metrics`, and the
        # running token count lives in `self._total_train_tokens` (divided by the tensor-parallel size, as TRL does).
        gather = self.accelerator.gather
        metrics = self._metrics[mode]
        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]
        if logit_sums is not None:
            chosen_sum, chosen_count, rejected_sum, rejected_count = gather(logit_sums[None]).sum(0).tolist()
            metrics["logits/chosen"].append(chosen_sum / chosen_count if chosen_count else 0.0)
            metrics["logits/rejected"].append(rejected_sum / rejected_count if rejected_count else 0.0)
        metrics["rewards/chosen"].append(gather(out.chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(out.rejected_rewards).mean().item())
        accuracies = (out.chosen_rewards > out.rejected_rewards).float()
        metrics["rewards/accuracies"].append(gather(accuracies).mean().item())
        metrics["rewards/margins"].append(gather(out.margins).mean().item())
        metrics["logps/chosen"].append(gather(out.chosen_logps).mean().item())
        metrics["logps/rejected"].append(gather(out.rejected_logps).mean().item())


_PROMPT_LEARNING = (
    "peft_config: prompt-learning PEFT (prefix/prompt tuning) is not supported: its virtual tokens are added by the "
    "PEFT wrapper's forward, which the fused loss does not call; use LoRA-style adapters, or trl.DPOTrainer"
)


def check_supported(args: DPOConfig) -> None:
    """Raise a ValueError naming the first DPOConfig option the fused loss cannot reproduce."""
    for loss_type in args.loss_type:
        if loss_type == "aot_unpaired":
            raise ValueError("loss_type: 'aot_unpaired' is not supported by the fused loss; 'aot' is")
        if loss_type not in DPO_LOSS_TYPES:
            known = sorted(DPO_LOSS_TYPES)
            raise ValueError(f"loss_type: unknown DPO loss type {loss_type!r}; expected one of {known}")
    if "sigmoid" in args.loss_type and args.label_smoothing:
        raise ValueError(
            "label_smoothing: TRL's DPOTrainer ignores it for 'sigmoid', while rftfast's sigmoid applies it "
            "(conservative DPO), so the drop-in would train on another loss; set label_smoothing=0.0 for TRL's "
            "sigmoid loss, or use 'robust'"
        )
    if args.ld_alpha is not None:
        raise ValueError("ld_alpha: LD-DPO's down-weighted token tail is not supported by the fused loss")
    if args.f_divergence_type != "reverse_kl":
        raise ValueError(
            f"f_divergence_type: only 'reverse_kl' (standard DPO) is supported by the fused loss, "
            f"got {args.f_divergence_type!r}"
        )
    if args.use_weighting:
        raise ValueError(
            "use_weighting: WPO weights need every token's sum of squared probabilities, a second pass over the "
            "vocabulary that the fused loss does not make"
        )
    plugin = args.deepspeed_plugin
    if plugin is not None and plugin.zero_stage == 3:
        raise ValueError("deepspeed: ZeRO-3 partitions the LM-head weight, which the fused loss reads whole")


def preference_loss_for(args: DPOConfig, head: Mapping, *, strategy: str = "auto") -> FusedDPOLoss:
    """The `FusedDPOLoss` of a (supported) DPOConfig: its loss types and weights, with 'sft' as the NLL term."""
    weights = args.loss_weights or [1.0] * len(args.loss_type)
    terms = [(t, float(w)) for t, w in zip(args.loss_type, weights, strict=True)]
    # TRL's 'sft' is the mean NLL of the chosen completion tokens, which is FusedDPOLoss's NLL term.
    nll_weight = sum(w for t, w in terms if t == "sft")
    # With 'sft' alone, a zero-weight sigmoid term carries the rewards TRL still logs (it adds nothing to the loss).
    preference = [(t, w) for t, w in terms if t != "sft"] or [("sigmoid", 0.0)]
    return FusedDPOLoss(
        [t for t, _ in preference],
        loss_weights=[w for _, w in preference],
        nll_weight=nll_weight,
        beta=args.beta,
        label_smoothing=args.label_smoothing,
        discopop_tau=args.discopop_tau,
        strategy=strategy,
        **head,
    )


def head_options_of(model: torch.nn.Module) -> dict:
    """The fused head's options for `model`'s logits: its final-logit softcap; a logit scale is refused."""
    config = unwrap(model).config.get_text_config()
    for name in LOGIT_SCALE_FIELDS:
        value = getattr(config, name, None)
        if value is not None and value != 1:
            raise ValueError(f"model: config.{name}={value} scales the logits, which the fused head does not")
    return {"softcap": getattr(config, "final_logit_softcapping", None)}


def head_parameters(model: torch.nn.Module, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The LM head's weight (cast like the hidden states) and its bias, if it has one."""
    bias = getattr(unwrap(model).get_output_embeddings(), "bias", None)
    return lm_head_weight(model, dtype), None if bias is None else bias.to(dtype)


def model_inputs(inputs: Mapping) -> dict:
    """The model's share of a TRL preference batch."""
    return {k: v for k, v in inputs.items() if k not in NON_MODEL_KEYS}


def next_token_labels(input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Labels aligned with the hidden states ([2B, T]): position t scores token t + 1 where that token belongs to
    the completion; the prompt, the padding and the last position are `IGNORE_INDEX`."""
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, :-1] = input_ids[:, 1:].masked_fill(completion_mask[:, 1:] == 0, IGNORE_INDEX)
    return labels


def mean_logit_sums(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor
) -> torch.Tensor:
    """(Σ mean logit, tokens) over the chosen completions, then the same over the rejected ones, as a [4] tensor.

    A token's logit averaged over the vocabulary is h · mean(W) + mean(b): the logits are linear in the head, so
    TRL's `logits/*` metrics cost one H-vector per token instead of a pass over the vocabulary. (Not under a
    softcap, which bends the logits: the caller leaves the metric out then.)
    """
    with torch.no_grad():
        counted = (labels != IGNORE_INDEX).to(hidden.dtype)
        row_sums = torch.einsum("bth,bt->bh", hidden.detach(), counted).float()  # [2B, H]
        mean_row = weight.detach().float().mean(0)
        per_row = row_sums @ mean_row  # [2B]
        tokens = counted.float().sum(1)
        if bias is not None:
            per_row += tokens * bias.detach().float().mean()
        (chosen_sum, rejected_sum), (chosen_tokens, rejected_tokens) = per_row.chunk(2), tokens.chunk(2)
        return torch.stack([chosen_sum.sum(), chosen_tokens.sum(), rejected_sum.sum(), rejected_tokens.sum()])


# ----------------------------------------------------------------------------- search pairs as a TRL dataset

PAIR_FORMATS = ("text", "messages")


def pairs_to_trl(
    pairs: Sequence[Pair],
    tokenizer: PreTrainedTokenizerBase,
    *,
    format: str = "text",
    records: Mapping[str, Record] | Sequence[Record] | None = None,
) -> datasets.Dataset:
    """Search pairs as TRL preference rows (`prompt`, `chosen`, `rejected`), one per pair, in pair order.

    - ``format="text"``: the pair's prompt, chosen and rejected token ids, each decoded by `tokenizer` with its
      special tokens (the answer's end token among them), so TRL tokenises the rows back to the pair's ids
      wherever the tokenizer round-trips its own output.
    - ``format="messages"``: conversational rows. `prompt` is the record's messages (`records`, found by
      `Pair.record_id`); `chosen` and `rejected` are one assistant message each, whose content is the answer so
      far followed by the pair's step, decoded and cut at the end-of-sequence token; `tools` is the record's tool
      list as JSON (TRL parses it for the chat template), None when it has none.

    Both keep `record_id`, `chosen_value` and `rejected_value` beside them (TRL drops columns it does not use).

    TRL closes every completion: it appends the end-of-sequence token to a text completion that lacks one, and
    the chat template ends each assistant message. A pair whose steps do not end the answer is therefore trained,
    under TRL, as if the answer ended after them; rftfast's own preference stage trains on the ids as they are.
    """
    if format not in PAIR_FORMATS:
        raise ValueError(f"format: expected one of {PAIR_FORMATS}, got {format!r}")
    if format == "messages" and records is None:
        raise ValueError("records: format='messages' needs the searched records, to take each pair's messages")
    by_id = records if records is None or isinstance(records, Mapping) else {r.id: r for r in records}

    def decode(ids: Sequence[int]) -> str:
        return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def assistant(pair: Pair, step_ids: Sequence[int]) -> list[dict]:
        text = decode([*pair.prompt_ids[pair.answer_start :], *step_ids])
        if tokenizer.eos_token:  # the template writes the end of the turn itself
            text = text.split(tokenizer.eos_token, 1)[0]
        return [{"role": "assistant", "content": text}]

    rows = []
    for pair in pairs:
        row = {"record_id": pair.record_id, "chosen_value": pair.chosen_value, "rejected_value": pair.rejected_value}
        if format == "text":
            row.update(
                prompt=decode(pair.prompt_ids), chosen=decode(pair.chosen_ids), rejected=decode(pair.rejected_ids)
            )
        else:
            if pair.record_id not in by_id:
                raise ValueError(f"records: no record with id {pair.record_id!r}, which a pair comes from")
            record = by_id[pair.record_id]
            row.update(
                prompt=[dict(m) for m in record.messages],
                chosen=assistant(pair, pair.chosen_ids),
                rejected=assistant(pair, pair.rejected_ids),
                tools=json.dumps(record.tools, ensure_ascii=False) if record.tools else None,
            )
        rows.append(row)
    if not rows:
        columns = ["record_id", "chosen_value", "rejected_value", "prompt", "chosen", "rejected"]
        return datasets.Dataset.from_dict({c: [] for c in columns + (["tools"] if format == "messages" else [])})
    return datasets.Dataset.from_list(rows)
