"""Warm blocking invoke latency and first-invoke costs beside two floors: the quick subset of
`python -m bench` (which runs all of this and more, beside Celery and the references).

    .venv/bin/python -m bench.invoke_latency [--sequential 300] [--concurrent 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import uvloop

from bench import floors, through_gateway
from bench.cluster import running_cluster
from bench.env import RESULTS
from bench.suite import STEM_CELLS
from cli.services import ensure_all


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    ensure_all(lambda m: print(f".. {m}"))
    results: dict[str, Any] = {}
    async with running_cluster("ft-bench-latency", stem_cells=STEM_CELLS) as bc:
        services = bc.services
        results["floor: aio-pika round trip"] = await floors.amqp_round_trip(
            services.amqp_url, 2000)
        results["floor: Redis GET"] = await floors.redis_get(services.redis_url, 2000)
        results["warm blocking invoke, sequential"] = await through_gateway.warm_sequential(
            bc, args.sequential)
        # Before the concurrent run fills the pool with warm containers.
        results["first invoke: stem cell (256 MB)"] = await through_gateway.first_invokes(
            bc, args.starts, 256, stem_cells=2)
        # No stem cell has this size: each first invoke starts a container.
        results["first invoke: cold start (128 MB)"] = await through_gateway.first_invokes(
            bc, args.starts, 128, stem_cells=0)
        results[f"warm blocking invoke, {args.workers} concurrent"] = \
            await through_gateway.warm_concurrent(bc, args.concurrent, args.workers)
    return results


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{'measurement':<42} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}  extra")
    for name, row in results.items():
        extra = {k: v for k, v in row.items() if k not in ("n", "p50_ms", "p99_ms", "mean_ms")}
        print(f"{name:<42} {row['n']:>5} {row['p50_ms']:>9.3f} {row['p99_ms']:>9.3f} "
              f"{row['mean_ms']:>9.3f}  {json.dumps(extra) if extra else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--concurrent", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--starts", type=int, default=8)
    args = parser.parse_args()
    results = uvloop.run(main_async(args))
    print_table(results)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"invoke_latency-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"machine": platform.node(), "cores": os.cpu_count(),
                               "results": results}, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
