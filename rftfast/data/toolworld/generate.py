"""Assemble tool-world tasks into `Record`s, and split them into train and held-out sets.

Record `i` of seed `s` depends only on `(s, i)`: its random generator is seeded from the pair,
so `generate(10, s)` is a prefix of `generate(1000, s)` and any record can be rebuilt alone.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from datetime import date

from rftfast.data.record import Record
from rftfast.data.toolworld import vocab as v
from rftfast.data.toolworld.nocall import no_call_task
from rftfast.data.toolworld.reasoning import reasoning_task
from rftfast.data.toolworld.tasks import Task, one_call, parallel
from rftfast.data.toolworld.tools import TOOLS, confusable_with

LEVELS = (1, 2, 3, 4, 5, 6)
LEVEL_NAMES = {
    1: "one call, required arguments",
    2: "optional arguments",
    3: "choose among distractor tools",
    4: "parallel calls",
    5: "computed values",
    6: "no call",
}

TASK_BUILDERS: dict[int, Callable[[random.Random, date], Task]] = {
    1: lambda rng, today: one_call(rng, today, optional=False),
    2: lambda rng, today: one_call(rng, today, optional=True),
    3: lambda rng, today: one_call(rng, today, optional=rng.random() < 0.3),
    4: parallel,
    5: reasoning_task,
    6: no_call_task,
}
# (fewest, most) distractor tools offered beside the needed ones.
DISTRACTORS = {1: (0, 0), 2: (0, 1), 3: (2, 4), 4: (1, 2), 5: (1, 2), 6: (2, 4)}

# Schemas serialised once: each record gets fresh dicts (json.loads is far cheaper than deepcopy),
# so a consumer that edits one record's tools cannot change TOOLS or another record.
SCHEMA_JSON = {tool["function"]["name"]: json.dumps(tool) for tool in TOOLS}


def generate(n: int, seed: int = 0, levels: Sequence[int] = LEVELS) -> list[Record]:
    """`n` tasks, the levels cycled in the order given (so each gets n / len(levels) of them)."""
    levels = tuple(levels)
    if not levels or any(level not in TASK_BUILDERS for level in levels):
        raise ValueError(f"levels: expected a non-empty sequence drawn from {LEVELS}, got {levels!r}")
    if n < 0:
        raise ValueError(f"n: expected a count >= 0, got {n}")
    return [make_record(seed, i, levels[i % len(levels)]) for i in range(n)]


def make_record(seed: int, index: int, level: int) -> Record:
    rng = random.Random(f"toolworld/{seed}/{index}")
    today = v.random_today(rng)
    task = TASK_BUILDERS[level](rng, today)
    messages = [system_message(today), *task.context, {"role": "user", "content": task.query}]
    meta = {"source": "toolworld", "level": level, "kind": task.kind, "today": today.isoformat()}
    return Record(messages, offered_tools(rng, task, level), task.answer, f"toolworld-{seed}-{index}", meta)


def system_message(today: date) -> dict:
    spoken = f"{v.WEEKDAYS[today.weekday()]}, {v.MONTHS[today.month - 1]} {today.day}, {today.year}"
    return {
        "role": "system",
        "content": f"You are a helpful assistant that can call functions. Today is {spoken} "
        f"({today.isoformat()}). Call a function when one fits the request; "
        "otherwise reply in plain text.",
    }


def offered_tools(rng: random.Random, task: Task, level: int) -> list[dict]:
    """The tools the answer needs plus the level's distractors, in a shuffled order."""
    needed = [] if isinstance(task.answer, str) else [call.name for call in task.answer]
    needed = list(dict.fromkeys([*needed, *task.required_tools]))
    fewest, most = DISTRACTORS[level]
    offered = needed + distractors(rng, task, level, needed, rng.randint(fewest, most))
    rng.shuffle(offered)
    return [json.loads(SCHEMA_JSON[name]) for name in offered]


def distractors(rng: random.Random, task: Task, level: int, needed: list[str], count: int) -> list[str]:
    """`count` tools that do not serve the task: near misses first, then (level 3) look-alikes, then any."""
    others = list(SCHEMA_JSON)
    rng.shuffle(others)
    lookalikes = confusable_with(needed[0]) if level == 3 and needed else []
    rng.shuffle(lookalikes)
    excluded = {*needed, *task.forbidden_tools}
    ordered = dict.fromkeys(name for name in (*task.near_misses, *lookalikes, *others) if name not in excluded)
    return list(ordered)[:count]


def user_query(record: Record) -> str:
    """The final user message: what the record asks, and what split() keeps on one side."""
    return next(m["content"] for m in reversed(record.messages) if m["role"] == "user")


def split(records: Sequence[Record], heldout_fraction: float = 0.2, seed: int = 0) -> tuple[list[Record], list[Record]]:
    """(train, heldout) with no final user query text on both sides.

    A query's text is a function of its template and entities, so grouping records by that text
    groups them by (template, entities): every record that shares a query lands on the same side.
    Groups are visited in a seeded random order and moved to the held-out side while they fit
    within `heldout_fraction` of the records; both sides keep the input order.
    """
    if not 0.0 <= heldout_fraction <= 1.0:
        raise ValueError(f"heldout_fraction: expected a value in [0, 1], got {heldout_fraction}")
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        groups.setdefault(user_query(record), []).append(i)
    order = list(groups)
    random.Random(seed).shuffle(order)
    target, heldout = round(heldout_fraction * len(records)), set()
    for query in order:
        if len(heldout) + len(groups[query]) <= target:
            heldout.update(groups[query])
    train = [r for i, r in enumerate(records) if i not in heldout]
    return train, [r for i, r in enumerate(records) if i in heldout]
