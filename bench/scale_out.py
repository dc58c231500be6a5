"""Scale-out: throughput of an I/O-bound action (it sleeps) with 1, 2 and 4 invoker hosts, on a
cluster spread over test hosts (cli/host_cluster.py: three RabbitMQ nodes with quorum queues,
Redis with a replica, one invoker per host). Builds the hosts itself and removes them when done;
prints a table and writes JSON.

    .venv/bin/python -m bench.scale_out [--json PATH] [--invokes 1200] [--sleep-ms 50]

Each invoker has ``--memory`` MB for 128 MB containers (default 512: four at a time), so one
invoker's ceiling is 4 / sleep; the target is 1.8x the one-invoker rate with two and 3.2x with
four. Throttles are lifted as for every benchmark (the cluster's settings)."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.cluster import BenchCluster, Services
from bench.through_gateway import async_burst
from bus.broker import Broker
from bus.config import GUEST_KEY, GUEST_UUID
from bus.store import Store
from cli.host_cluster import HostCluster
from cli.services import ensure_docker
from runtimes.build import build_images

STEPS = (1, 2, 4)
PARTITION_S = 20.0  # beyond invoker_dead_after_s (10 s): the initializers drain its queue
FAULT_SETTLE_S = 180.0
TARGETS = {2: 1.8, 4: 3.2}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_out",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    parser.add_argument("--invokes", type=int, default=1200, help="invokes per step")
    parser.add_argument("--sleep-ms", type=int, default=50, help="what the action sleeps")
    parser.add_argument("--memory", type=int, default=512, help="each invoker's MB")
    parser.add_argument("--in-flight", type=int, default=64, help="requests at a time")
    parser.add_argument("--subnet", type=int, default=100, help="10.213.K.0/24 of the hosts")
    return parser.parse_args()


def sleeper(ms: int) -> str:
    return f"import time\ndef main(args):\n    time.sleep({ms / 1000})\n    return {{}}\n"


async def measure(cluster: HostCluster, args: argparse.Namespace) -> dict[str, Any]:
    services = Services(cluster.rabbit.url(cluster.network.hosts[0]), cluster.redis.url)
    store = Store.from_url(services.redis_url)
    broker = await Broker.connect(services.amqp_url, name="scale-out-watch", quorum=True)
    auth = {"Authorization": aiohttp.encode_basic_auth(GUEST_UUID, GUEST_KEY)}
    http = aiohttp.ClientSession(base_url=cluster.api_host, headers=auth,
                                 connector=aiohttp.TCPConnector(limit=0))
    bench = BenchCluster(cluster.processes, services, store, broker, http)
    steps: dict[str, Any] = {}
    try:
        name = f"sleep{args.sleep_ms}"
        await bench.create_action(name, sleeper(args.sleep_ms), memory=128)
        for invokers in STEPS:
            while len(cluster.invoker_ids) < invokers:
                cluster.add_invoker()
            await asyncio.to_thread(cluster.wait_for_invokers)
            # Every invoker holds its containers warm before the measured burst.
            await async_burst(bench, [name], 8 * invokers * args.memory // 128,
                              args.in_flight, 120)
            burst = await async_burst(bench, [name], args.invokes, args.in_flight, 300)
            records = await store.list_records("guest", name=name, limit=args.invokes)
            burst["by_invoker"] = _by_invoker(records[: args.invokes])
            steps[str(invokers)] = burst
            print(f".. {invokers} invoker(s): {burst['per_s']} /s, errors {burst['errors']}, "
                  f"starts {burst['starts']}", flush=True)
        steps["faults"] = {"invoker_partitioned": await invoker_partitioned(
            cluster, bench, name, args)}
        print(f".. invoker host partitioned: {steps['faults']['invoker_partitioned']}",
              flush=True)
    finally:
        await http.close()
        await broker.close()
        await store.close()
    return steps


async def invoker_partitioned(
    cluster: HostCluster, bench: BenchCluster, name: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Steady non-blocking load; meanwhile the last invoker host is cut off the network (its
    veth down) for PARTITION_S, longer than the initializers wait before they call it down
    and hand its queue to the others, then healed. Every accepted activation must end with
    exactly one record."""
    host = cluster.network.hosts[-1]
    accepted: list[str] = []
    gate = asyncio.Semaphore(args.in_flight)

    async def one() -> None:
        async with gate:
            activation_id = await bench.invoke_async(name)
            if activation_id is not None:
                accepted.append(activation_id)

    started = time.monotonic()
    load = asyncio.gather(*(one() for _ in range(args.invokes)))
    await asyncio.sleep(1.0)
    cluster.network.partition(host.name)
    try:
        await asyncio.sleep(PARTITION_S)
    finally:
        cluster.network.heal(host.name)
    await load
    deadline = time.monotonic() + FAULT_SETTLE_S
    while True:
        found = [await bench.store.get_record(a) for a in accepted]
        missing = [a for a, r in zip(accepted, found, strict=True) if r is None]
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    records = [r for r in found if r is not None]
    return {"accepted": len(accepted), "lost": len(missing),
            # The store keeps the first record of an id: two would be two ids for one.
            "duplicated": len(records) - len({r.activationId for r in records}),
            "failed": sum(1 for r in records if not r.response.success),
            "host": host.name, "partitioned_s": PARTITION_S,
            "all_records_after_s": round(time.monotonic() - started, 1),
            "by_invoker": _by_invoker(records),
            # Ran again elsewhere after its first invoker was cut off (a later attempt).
            "attempted_again": sum(1 for r in records if r.attempts > 1)}


def _by_invoker(records: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.invoker or "?"] = counts.get(record.invoker or "?", 0) + 1
    return counts


def report(steps: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    faults = steps.pop("faults", {})
    one = steps["1"]["per_s"]
    rows = [f"{'invokers':>8} {'activations/s':>14} {'x one':>6} {'target':>7} {'errors':>7}  "
            "warm share"]
    verdicts: dict[str, str] = {}
    for invokers, burst in steps.items():
        ratio = burst["per_s"] / one if one else 0.0
        target = TARGETS.get(int(invokers))
        verdict = "-" if target is None else ("pass" if ratio >= target else "miss")
        if target is not None:
            verdicts[f"{invokers} invokers >= {target}x"] = verdict
        warm = burst["starts"].get("warm", 0) / max(1, sum(burst["starts"].values()))
        rows.append(f"{invokers:>8} {burst['per_s']:>14.1f} {ratio:>6.2f} "
                    f"{(f'{target}x ' + verdict) if target else '':>7} {burst['errors']:>7}  "
                    f"{warm:.0%}")
    for fault, outcome in faults.items():
        verdicts[fault] = "pass" if outcome["lost"] == 0 and outcome["duplicated"] == 0 \
            else "miss"
        rows.append(f"fault {fault}: accepted {outcome['accepted']}, lost {outcome['lost']}, "
                    f"duplicated {outcome['duplicated']}, failed {outcome['failed']}")
    print("\n".join(rows))
    return {
        "faults": faults,
        "rate_by_invokers": {k: v["per_s"] for k, v in steps.items()},
        "steps": steps,
        "targets": verdicts,
        "action_sleep_ms": args.sleep_ms,
        "invoker_memory_mb": args.memory,
        "invokes_per_step": args.invokes,
    }


def main() -> None:
    args = parse_args()
    ensure_docker(lambda m: print(f".. {m}"))
    build_images(progress=lambda m: None)  # the sandboxes unpack the runtime images
    base = Path(tempfile.mkdtemp(prefix="ft-scale-out-"))
    cluster = HostCluster.for_invokers(f"so{secrets.token_hex(2)}", max(STEPS), base,
                                       subnet=args.subnet, user_memory_mb=args.memory)
    started = time.monotonic()
    print(f".. {cluster.network.count} hosts, one invoker to start with", flush=True)
    try:
        cluster.start(invokers=1)
        steps = uvloop.run(measure(cluster, args))
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
    out = report(steps, args) | {"elapsed_s": round(time.monotonic() - started, 1)}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
        print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
