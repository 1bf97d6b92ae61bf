"""One aggregation of judged answers, for the CLI's table and the pipeline's held-out metrics."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from rftfast.data.record import Record
from rftfast.eval.checker import CheckResult
from rftfast.eval.judge import infer_category


def is_live(category: str) -> bool:
    """Whether a BFCL category is one of the live ones (user-contributed queries: `live_simple`, ...)."""
    return category.startswith("live_")


def difficulty_of(record: Record) -> str:
    """The tool world's level, else BFCL's category: how the pipeline groups its held-out records."""
    level = record.meta.get("level")
    return f"level {level}" if level is not None else infer_category(record)


@dataclass
class EvalReport:
    """Per group (a category, a difficulty): how many, how many right, and the failure categories of the rest.

    `failure_totals` counts the failure categories over all groups, in the order they were first met.
    """

    total: Counter = field(default_factory=Counter)
    correct: Counter = field(default_factory=Counter)
    failures: dict = field(default_factory=lambda: defaultdict(Counter))
    failure_totals: Counter = field(default_factory=Counter)

    def add(self, group: str, result: CheckResult) -> None:
        self.total[group] += 1
        if result.valid:
            self.correct[group] += 1
        else:
            self.failures[group][result.category] += 1
            self.failure_totals[result.category] += 1

    @property
    def n(self) -> int:
        return sum(self.total.values())

    @property
    def accuracy(self) -> float:
        n = self.n
        return sum(self.correct.values()) / n if n else 0.0

    def group_accuracy(self, group: str) -> float:
        return self.correct[group] / self.total[group]

    def metrics(self, by: str = "by_group") -> dict:
        """{"accuracy", `by`: {group: accuracy} in group order, "failures": {category: n}, "n"}."""
        return {
            "accuracy": self.accuracy,
            by: {g: self.group_accuracy(g) for g in sorted(self.total)},
            "failures": dict(self.failure_totals),
            "n": self.n,
        }

    def table(self) -> str:
        """A markdown table: one row per group, then BFCL's live and non-live aggregates where the groups hold
        live categories, then all records (BFCL's overall).

        The aggregates count records, as BFCL does for live; BFCL's leaderboard averages its non-live
        subcategories (and its overall) unweighted, so those two can differ from its numbers. Without live
        categories no aggregate lines are added: every record is non-live, and the **all** row says so.
        """
        kinds = sorted({k for c in self.failures.values() for k in c})
        head = "| category | n | accuracy | " + " | ".join(kinds) + (" |" if kinds else "")
        lines = [head, "|---|---:|---:|" + "---:|" * len(kinds)]
        for group in sorted(self.total):
            cells = " | ".join(str(self.failures[group].get(k, 0)) for k in kinds)
            lines.append(
                f"| {group} | {self.total[group]} | {self.group_accuracy(group):.1%} | {cells}"
                + (" |" if kinds else "")
            )
        live = [g for g in self.total if is_live(g)]
        if live:
            non_live = [g for g in self.total if not is_live(g)]
            for name, groups in (("non-live", non_live), ("live", live)):
                if groups:
                    n, correct = sum(self.total[g] for g in groups), sum(self.correct[g] for g in groups)
                    lines.append(f"| **{name}** | {n} | {correct / n:.1%} |" + " |" * len(kinds))
        lines.append(f"| **all** | {self.n} | {self.accuracy:.1%} |" + " |" * len(kinds))
        return "\n".join(lines)
