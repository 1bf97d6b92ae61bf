"""pytest plugin for the GPU suite: one JSON line per finished test, written as it finishes.

`python -m pytest -p pytest_progress` (with benchmarks/gpu on PYTHONPATH) and GPU_SUITE_PROGRESS set to a
file: the outcomes survive a run that its time limit cuts short, which a junit report (written at the
end) would not.
"""

from __future__ import annotations

import json
import os


def pytest_runtest_logreport(report):
    path = os.environ.get("GPU_SUITE_PROGRESS")
    if not path:
        return
    # One line per test: its call phase, or the setup/teardown phase that failed or skipped it.
    if report.when != "call" and report.passed:
        return
    line = {"test": report.nodeid, "when": report.when, "outcome": report.outcome, "seconds": round(report.duration, 3)}
    if report.failed or report.skipped:
        line["message"] = str(report.longrepr)[-1500:] if report.failed else str(report.longrepr)[:300]
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
