"""Draws a bench result as a PNG (runs in the bench venv, where matplotlib is):

    bench/.venv/bin/python -m bench.chart bench/results/bench-....json out.png

A bench run: every figure that has a reference, as measured/reference on a log scale (left of
1 is faster or smaller than the reference for times, slower for rates), and the targets.
A soak run: RSS of each process over time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt


def _bench(data: dict[str, Any], out: Path) -> None:
    rows = [r for r in data["rows"] if r.get("ratio")]
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(rows) + 2.5))
    names = [f"{r['name']} ({r['value']:g} {r['unit']} vs {r['reference_text']})"
             for r in rows]
    colours = ["tab:blue" if r["unit"] == "ms" else "tab:green" for r in rows]
    ax.barh(names, [r["ratio"] for r in rows], color=colours)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("measured / reference (blue: time, lower is better; "
                  "green: rate, higher is better)")
    verdicts = "   ".join(f"{t['verdict'].upper()}: {t['name']}" for t in data["targets"])
    ax.set_title(f"Funtainer bench {data['meta']['started']}", fontsize=10)
    fig.text(0.01, 0.01, verdicts, fontsize=6, wrap=True)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(out, dpi=110)


def _soak(data: dict[str, Any], out: Path) -> None:
    samples = data["soak"]["samples"]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    times = [s["t_s"] for s in samples]
    for role in samples[0]["processes_mb"] if samples else []:
        ax.plot(times, [s["processes_mb"][role] for s in samples], label=role)
    ax.plot(times, [s["containers"].get("p50_mb") for s in samples], label="container (p50)")
    ax.set_xlabel("seconds under load")
    ax.set_ylabel("MB resident")
    ax.set_ylim(bottom=0)
    ax.legend()
    ax.set_title(data["soak"]["summary"], fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    data = json.loads(source.read_text())
    (_soak if "soak" in data else _bench)(data, out)


if __name__ == "__main__":
    main()
