"""The smallest run that passes through every stage (a tiny model, a tiny search): `--set` overrides
shared by the pipeline tests and the GPU suite's smoke run. Plain data, imported without torch."""

SMALL = [
    "data.num_train=40",
    "data.num_heldout=12",
    "model.hidden_size=32",
    "model.num_layers=2",
    "model.num_heads=2",
    "model.num_kv_heads=1",
    "model.intermediate_size=64",
    "model.vocab_size=400",
    "warmup.epochs=1",
    "warmup.batch_size=8",
    "warmup.buckets=2",
    "deficiency.max_records=8",
    "deficiency.max_new_tokens=20",
    "search.rounds=2",
    "search.samples_per_expansion=2",
    "search.max_depth=3",
    "search.max_new_tokens=10",
    "preference.epochs=1",
    "preference.batch_size=4",
    "iterations=1",
    "eval.max_new_tokens=20",
]
