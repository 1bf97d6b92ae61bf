"""Why a held-out number moved: the diagnostics an iteration reports beside its accuracy.

- `verdict_changes`: held-out records fixed and broken between two checkpoints, and the fix rate: of the records
  the earlier policy failed, the share whose first wrong greedy step (`rftfast.mcts.divergence_pair`) the later
  policy now writes right.
- `pair_margins`: how a policy ranks the two steps of each pair (log-prob margins), so the held-out pairs built
  from the earlier policy's failures show whether the preference stage generalised beyond its training pairs.
- `rejected_is_greedy`: per pair, whether its rejected step is what the policy itself writes greedily at that
  prefix, i.e. whether the pairs push against the mistakes the policy actually makes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from rftfast.answer import cut_at_step
from rftfast.eval import greedy_token_ids
from rftfast.mcts import Pair, Truth
from rftfast.mcts.pairs import answer_format

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def verdict_changes(
    before: Sequence[bool],
    after: Sequence[bool],
    held_out_pairs: dict[int, Pair],
    truths: Sequence[Truth | None],
    after_ids: Sequence[Sequence[int]],
) -> dict:
    """Fixed / broken counts between two evaluations of the same records, and the fix rate.

    `held_out_pairs[i]` is record i's divergence pair under the earlier policy (only failed records have one);
    its first wrong step counts as fixed when the later greedy answer holds the truth through that step.
    """
    if len(before) != len(after) or len(after) != len(after_ids) or len(after) != len(truths):
        raise ValueError("before, after, truths and after_ids: expected one entry per record each")
    fixed = sum(1 for b, a in zip(before, after) if not b and a)
    broken = sum(1 for b, a in zip(before, after) if b and not a)
    step_fixed = 0
    for i, pair in held_out_pairs.items():
        truth = truths[i]
        step_end = len(pair.prompt_ids) - pair.answer_start + len(pair.chosen_ids)  # in answer tokens
        if truth is not None and list(after_ids[i][:step_end]) == list(truth.answer_ids[:step_end]):
            step_fixed += 1
    return {
        "fixed": fixed,
        "broken": broken,
        "failed_before": sum(1 for b in before if not b),
        "fix_rate": step_fixed / len(held_out_pairs) if held_out_pairs else 0.0,
        "first_wrong_steps": len(held_out_pairs),
    }


def pair_margins(logps: torch.Tensor, ref_logps: torch.Tensor | None = None) -> dict:
    """Summary of `logps` [P, 2] (chosen, rejected summed log-probs): the share of pairs ranked right and the mean
    and median log-prob margin (the median, the lower middle value for an even count: one long rejected answer
    can move the mean by nats); with `ref_logps` (the policy before training), also DPO's implicit reward accuracy and
    mean reward margin (beta 1: the change of the log-ratio)."""
    if logps.numel() == 0:
        return {"pairs": 0}
    margin = logps[:, 0] - logps[:, 1]
    out = {
        "pairs": int(logps.shape[0]),
        "ranked_right": float((margin > 0).float().mean()),
        "mean_margin": float(margin.mean()),
        "median_margin": float(margin.median()),
    }
    if ref_logps is not None:
        reward_margin = margin - (ref_logps[:, 0] - ref_logps[:, 1])
        out["reward_accuracy"] = float((reward_margin > 0).float().mean())
        out["mean_reward_margin"] = float(reward_margin.mean())
    return out


@torch.no_grad()
def rejected_is_greedy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[Pair],
    max_new_tokens: int,
    batch_size: int = 16,
    call_format: str | None = None,
) -> list[bool]:
    """Per pair: whether its rejected step equals the policy's greedy step at the pair's prefix (decoded until
    it completes a step in `call_format`, default the template's, as the search cuts its children)."""
    same = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        continuations = greedy_token_ids(model, tokenizer, [p.prompt_ids for p in chunk], max_new_tokens)
        for pair, ids in zip(chunk, continuations, strict=True):
            same.append(greedy_step(tokenizer, pair, ids, call_format) == list(pair.rejected_ids))
    return same


def greedy_step(
    tokenizer: PreTrainedTokenizerBase, pair: Pair, ids: Sequence[int], call_format: str | None = None
) -> list[int]:
    """The tokens of `ids` (a continuation of the pair's prefix) up to where they complete a step in
    `call_format` (`rftfast.mcts.answer_format`'s default: the chat template's)."""
    so_far = tokenizer.decode(pair.prompt_ids[pair.answer_start :])
    end = cut_at_step(ids, tokenizer.decode, so_far, answer_format(tokenizer, call_format=call_format))
    return list(ids[:end] if end is not None else ids)
