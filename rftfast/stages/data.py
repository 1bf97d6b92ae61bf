"""The data stage: the records, the tokenizer and the initial policy, and the examples that fit."""

from __future__ import annotations

import random

from rftfast import distributed
from rftfast.config import ConfigError, RunConfig
from rftfast.data.chat import Example, answer_content, fallback_prompt, render_example
from rftfast.data.io import read_records, write_records
from rftfast.data.record import Record
from rftfast.stages.state import RunState


def load_records(cfg: RunConfig) -> tuple[list[Record], list[Record]]:
    """(training, held-out) records: generated in the tool world, or read from `data.source` and split."""
    if cfg.data.source == "toolworld":
        from rftfast.data.toolworld import generate, split

        total = cfg.data.num_train + cfg.data.num_heldout
        records = generate(round(total * 1.3), seed=cfg.data.seed, levels=tuple(cfg.data.levels))
        train, heldout = split(records, heldout_fraction=cfg.data.num_heldout / (total * 1.3), seed=cfg.data.seed)
        return train[: cfg.data.num_train], heldout[: cfg.data.num_heldout]
    records = list(read_records(cfg.data.source))
    if not records:
        raise ConfigError(f"data.source: {cfg.data.source} holds no records")
    if len(records) <= cfg.data.num_heldout:
        raise ConfigError(
            f"data.num_heldout: {cfg.data.source} holds {len(records)} records; holding out "
            f"{cfg.data.num_heldout} leaves none to train on"
        )
    rng = random.Random(cfg.data.seed)
    rng.shuffle(records)
    return records[cfg.data.num_heldout :][: cfg.data.num_train], records[: cfg.data.num_heldout]


def render(state: RunState, records: list[Record], split: str) -> tuple[list[Record], list[Example], int]:
    """(records, examples) that fit `model.max_length`, and how many did not (none fitting is an error)."""
    kept, examples = [], []
    for r in records:
        try:
            ex = render_example(r, state.tokenizer, call_format=state.cfg.model.call_format)
        except ValueError as e:  # a format the tokenizer's template cannot write: the config's fault, said so
            if state.cfg.model.call_format is None:
                raise
            raise ConfigError(f"model.call_format: {e}") from None
        if len(ex.input_ids) <= state.cfg.model.max_length:
            kept.append(r)
            examples.append(ex)
    if not kept:
        raise ConfigError(
            f"model.max_length: 0 of {len(records)} {split} records fit in "
            f"model.max_length={state.cfg.model.max_length}"
        )
    return kept, examples, len(records) - len(kept)


def stage_data(state: RunState) -> None:
    """Make (or, resumed, load) the data and the initial policy; `state` gets the examples that fit."""
    from rftfast.train.model import load_policy

    cfg = state.cfg

    def build(seed):
        # Rank 0 makes the data, tokenizer and initial model; the other ranks load them, so all agree.
        summary = None
        if distributed.is_main():
            train, heldout = load_records(cfg)
            write_records(train, state.dir / "data" / "train.jsonl")
            write_records(heldout, state.dir / "data" / "heldout.jsonl")
            corpus = [fallback_prompt(r.messages, r.tools) + answer_content(r) for r in train]
            state.model, state.tokenizer = load_policy(cfg.model, corpus, seed, cfg.device)
            # Refused here, before the stage counts as done; what is too long is counted in its record.
            skipped = {"train": render(state, train, "training")[2], "heldout": render(state, heldout, "held-out")[2]}
            state.save_model("initial")
            summary = {"train": len(train), "heldout": len(heldout), "skipped_too_long": skipped}
        distributed.barrier()
        if not distributed.is_main():
            state.load_model("initial")
        return distributed.broadcast(summary)

    state.stage("data", build, lambda: state.load_model("initial"))
    train = list(read_records(state.dir / "data" / "train.jsonl"))
    heldout = list(read_records(state.dir / "data" / "heldout.jsonl"))
    state.train, state.train_examples, _ = render(state, train, "training")
    state.heldout, state.heldout_examples, _ = render(state, heldout, "held-out")
