"""Funtainer's benchmark: the platform beside the raw floors of each hop and beside Celery 5,
in one run on the same RabbitMQ, Redis and Docker engine. Prints a table and writes JSON and a
PNG chart to bench/results/.

    .venv/bin/python -m bench              # everything (installs bench/.venv on first run)
    .venv/bin/python -m bench --smoke      # a minute at most, small N (the test command)
    .venv/bin/python -m bench --soak 600   # only: RSS sampled under load for 10 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvloop

from bench.env import RESULTS, bench_env, bench_python, bench_venv_ready, ensure_bench_venv
from bench.report import as_json, render, rows_for, targets_for
from bench.sizes import FULL, SMOKE, with_overrides
from bench.soak import run_soak
from bench.suite import SECTIONS, Suite
from cli.services import ensure_all


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes; Celery only if bench/.venv is already installed")
    parser.add_argument("--no-celery", action="store_true", help="skip the Celery peer")
    parser.add_argument("--soak", type=float, default=0, metavar="SECONDS",
                        help="run only the memory soak: steady load for this long")
    parser.add_argument("--soak-interval", type=float, default=10, metavar="SECONDS",
                        help="RSS sampling interval of the soak")
    for flag, help_text in (("celery-tasks", "Celery live no-op tasks (default 20000)"),
                            ("async-invokes", "non-blocking invokes (default 5000)"),
                            ("sequential", "sequential blocking invokes (default 500)"),
                            ("many-invokes", "invokes per many-actions run (default 2000)"),
                            ("no-room-invokes", "the same without room (default 500)")):
        parser.add_argument(f"--{flag}", type=int, help=help_text)
    return parser.parse_args()


def write_outputs(kind: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = RESULTS / f"{kind}-{stamp}.json"
    out.write_text(json.dumps(payload, indent=2))
    print(f"\nJSON: {out}")
    if bench_venv_ready():  # matplotlib lives in the bench venv
        png = out.with_suffix(".png")
        drawn = subprocess.run([str(bench_python()), "-m", "bench.chart", str(out), str(png)],
                               env=bench_env(), capture_output=True, text=True)
        print(f"chart: {png}" if drawn.returncode == 0 else
              f"chart failed: {drawn.stderr[-500:]}")
    else:
        print("chart: skipped (no bench venv with matplotlib)")
    return out


def main() -> None:
    args = parse_args()
    ensure_all(lambda m: print(f".. {m}"))
    celery = not args.no_celery
    if celery and not args.smoke:
        ensure_bench_venv(lambda m: print(f".. {m}"))
    meta = {"machine": platform.node(), "cores": os.cpu_count(), "smoke": args.smoke,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "load_avg_at_start": os.getloadavg()}
    if args.soak:
        soak = uvloop.run(run_soak(args.soak, args.soak_interval))
        print("\n" + soak["summary"])
        write_outputs("soak", {"meta": meta, "soak": soak})
        sys.exit(0 if soak["flat"] else 1)
    sizes = with_overrides(SMOKE if args.smoke else FULL, celery_tasks=args.celery_tasks,
                           async_invokes=args.async_invokes, sequential=args.sequential,
                           many_invokes=args.many_invokes, no_room_invokes=args.no_room_invokes)
    suite = Suite(sizes, celery)
    started = time.monotonic()
    results = uvloop.run(suite.run())
    meta |= {"elapsed_s": round(time.monotonic() - started, 1),
             "load_avg_at_end": os.getloadavg(), "sizes": vars(sizes)}
    rows, targets = rows_for(results), targets_for(results)
    print("\n" + render(rows, targets))
    missing = [name for name in SECTIONS if not results.get(name)]
    write_outputs("bench", {"meta": meta, **results, **as_json(rows, targets),
                            "failures": suite.failures})
    if suite.failures or missing:
        print(f"\nFAILED: {suite.failures + [f'missing section {m}' for m in missing]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
