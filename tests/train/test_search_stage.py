"""The search stage searches many records in waves that fit the KV pool, and every pair keeps its record."""

from rftfast.data.toolworld import generate
from rftfast.mcts import PairConfig
from rftfast.train.search_stage import SearchStageConfig, search_pairs
from tests.support.tiny import tiny_llama, tiny_tokenizer


def test_waves_search_every_record_and_pairs_point_at_their_record():
    records = [r for r in generate(12, seed=5) if r.is_call][:5]
    tok = tiny_tokenizer()
    model = tiny_llama(len(tok)).eval()
    cfg = SearchStageConfig(
        rounds=2, samples_per_expansion=2, max_depth=2, max_new_tokens=6, ground_truth_chosen=True,
        pairs=PairConfig(min_gap=0.0), trees_per_wave=2,
    )  # fmt: skip
    pairs, stats = search_pairs(model, tok, records, cfg, seed=0)
    assert stats["waves"] == 3  # 2 + 2 + 1 trees
    assert stats["simulations"] == 2 * len(records)  # one leaf per tree per round, in every wave
    assert pairs and all(p.record_id == records[p.tree].id for p in pairs)
    assert {p.tree for p in pairs} - {0, 1} != set()  # pairs from the later waves too
