"""Ranges over several bench runs: one line per figure with its lowest and highest value (and
reference ratio), then every run's verdict per target. Numbers on a shared machine are noisy;
a range over runs says more than one run.

    .venv/bin/python -m bench.summarize bench/results/bench-*.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _span(values: list[float]) -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    fmt = (lambda v: f"{v:,.0f}") if high >= 1000 else (lambda v: f"{v:.3g}")
    return fmt(low) if low == high else f"{fmt(low)}-{fmt(high)}"


def summarize(runs: list[dict[str, Any]]) -> str:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        for row in run.get("rows", []):
            by_name.setdefault(row["name"], []).append(row)
    # The latest run's order; rows only older runs had (renamed since) at the end.
    names = [row["name"] for row in runs[-1].get("rows", [])] if runs else []
    names += [name for name in by_name if name not in names]
    lines = [f"{len(runs)} runs: "
             + ", ".join(f"{r['meta']['started']} (load {r['meta']['load_avg_at_start'][0]:.1f})"
                         for r in runs),
             f"{'measurement':<40} {'p50/value':>14} {'p99':>14} {'unit':<4} "
             f"{'reference':>16} {'ratio':>12}"]
    for name in names:
        rows = by_name[name]
        values = [r["value"] for r in rows if r["value"] is not None]
        p99s = [r["p99"] for r in rows if r.get("p99")]
        ratios = [r["ratio"] for r in rows if r.get("ratio")]
        reference = next((r["reference_text"] for r in rows if r["reference_text"]), "")
        lines.append(f"{name:<40} {_span(values):>14} {_span(p99s) if p99s else '':>14} "
                     f"{rows[0]['unit']:<4} {reference:>16} "
                     f"{_span(ratios) + 'x' if ratios else '':>12}")
    lines.append("")
    targets: dict[str, list[str]] = {}
    for run in runs:
        for t in run.get("targets", []):
            targets.setdefault(t["name"], []).append(f"{t['verdict']} {t['measured']}")
    lines += [f"{name:<56} " + " | ".join(seen) for name, seen in targets.items()]
    return "\n".join(lines)


def main() -> None:
    runs = [json.loads(Path(p).read_text()) for p in sys.argv[1:]]
    runs = [r for r in runs if "rows" in r and not r["meta"].get("smoke")]
    print(summarize(runs))


if __name__ == "__main__":
    main()
