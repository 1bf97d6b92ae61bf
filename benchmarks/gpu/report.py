"""The GPU suite's closing table, from its summary.json (stdlib only).

python benchmarks/gpu/report.py gpu-out/summary.json
"""

from __future__ import annotations

import json
import sys


def _figures_line(name: str, figures: dict) -> str:
    """The few figures of a part worth a glance; the rest are in summary.json."""
    if not figures:
        return ""
    if name == "env":
        keys = ("gpu", "capability", "torch", "triton", "transformers", "rftfast")
        return ", ".join(f"{k} {figures[k]}" for k in keys if figures.get(k) is not None)
    if name == "tests":
        return ", ".join(f"{k} {figures[k]}" for k in ("passed", "failed", "skipped", "errors") if figures.get(k))
    if name == "bench":
        rows = figures.get("rows", [])
        ok = sum(r.get("status") == "ok" for r in rows)
        return f"{ok} of {len(rows)} jobs ok"
    if name == "pipeline":
        acc = figures.get("accuracy")
        return f"accuracy {acc}" if acc else ""
    if name in ("install", "build"):
        return ", ".join(f"{k} {v}" for k, v in figures.items() if isinstance(v, (int, float, str)))[:100]
    return ""


def render(summary: dict) -> str:
    lines = [
        f"GPU suite ({summary.get('mode')}): {summary.get('status')} in {summary.get('wall_s', 0):.0f} s "
        f"of a {summary.get('budget_s', 0):.0f} s budget; files in {summary.get('out')}",
        "| part | status | seconds | reason / figures |",
        "|---|---|---:|---|",
    ]
    for name, part in summary.get("parts", {}).items():
        note = part.get("reason") or _figures_line(name, part.get("figures") or {})
        lines.append(
            f"| {name} | {part.get('status')} | {part.get('wall_s', 0):.0f} | {str(note)[:110].replace('|', '/')} |"
        )
    bench = (summary.get("parts", {}).get("bench") or {}).get("figures") or {}
    if bench.get("table"):
        lines += ["", bench["table"]]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        print(render(json.load(f)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
