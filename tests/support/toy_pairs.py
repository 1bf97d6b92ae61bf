"""Preference pairs for the training tests: each example's answer chosen over the answer reversed."""

from rftfast.mcts import Pair


def reversed_pairs(examples) -> list[Pair]:
    """One `rftfast.mcts.Pair` per example (a root pair of tree i), as the search would hand them over."""
    pairs = []
    for i, e in enumerate(examples):
        chosen, rejected = list(e.answer_ids), list(e.answer_ids[::-1])
        common = next((j for j, (a, b) in enumerate(zip(chosen, rejected)) if a != b), min(len(chosen), len(rejected)))
        pairs.append(
            Pair(
                record_id=str(i),
                tree=i,
                node=0,
                depth=0,
                prompt_ids=list(e.prompt_ids),
                chosen_ids=chosen,
                rejected_ids=rejected,
                chosen_value=1.0,
                rejected_value=0.0,
                chosen_visits=1,
                rejected_visits=1,
                answer_start=len(e.prompt_ids),
                divergence=len(e.prompt_ids) + common,
            )
        )
    return pairs
