"""Scale-out: throughput of an I/O-bound action (it sleeps) with 1, 2 and 4 invoker hosts, on a
cluster spread over test hosts (cli/host_cluster.py: three RabbitMQ nodes with quorum queues,
Redis with a replica and Sentinels, one invoker per host). Builds the hosts itself and removes
them when done; prints a table and writes JSON.

    .venv/bin/python -m bench.scale_out [--json PATH] [--invokes 1200] [--sleep-ms 50]

Each invoker has ``--memory`` MB for 128 MB containers (default 512: four at a time), so one
invoker's ceiling is 4 / sleep; the target is 1.8x the one-invoker rate with two and 3.2x with
four. Throttles are lifted as for every benchmark (the cluster's settings).

Then three faults, each under a steady load of ``--invokes`` calls over 30 s: an invoker host
partitioned (its veth down for 20 s), the RabbitMQ node leading ``ft.activations`` killed
(SIGKILL, down 15 s, then started again), the Redis primary killed (the Sentinels promote the
replica; the old primary comes back as its replica). Each counts accepted, lost and duplicated
activations: every accepted one must end with exactly one record."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

from bench.cluster import BenchCluster, Services
from bench.through_gateway import async_burst
from bus.broker import ACTIVATIONS, Broker
from bus.config import GUEST_KEY, GUEST_UUID
from bus.store import Store
from cli.host_cluster import HostCluster
from cli.services import ensure_docker
from runtimes.build import build_images

STEPS = (1, 2, 4)
PARTITION_S = 20.0  # beyond invoker_dead_after_s (10 s): the initializers drain its queue
NODE_DOWN_S = 15.0
FAULT_LOAD_S = 30.0  # each fault strikes under a steady load this long
FAILOVER_WAIT_S = 60.0
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
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the processes' logs (their directory is printed)")
    return parser.parse_args()


def sleeper(ms: int) -> str:
    return f"import time\ndef main(args):\n    time.sleep({ms / 1000})\n    return {{}}\n"


async def measure(cluster: HostCluster, args: argparse.Namespace) -> dict[str, Any]:
    services = Services(cluster.rabbit.urls(cluster.network.hosts[0]), cluster.redis.url)
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
        faults = steps["faults"] = {}
        for fault, inject in (("invoker_partitioned", partition_invoker),
                              ("rabbitmq_node_killed", kill_rabbitmq_leader),
                              ("redis_primary_killed", kill_redis_primary)):
            faults[fault] = await under_fault(bench, name, args, lambda i=inject: i(cluster))
            print(f".. {fault}: {faults[fault]}", flush=True)
    finally:
        await http.close()
        await broker.close()
        await store.close()
    return steps


async def under_fault(
    bench: BenchCluster, name: str, args: argparse.Namespace,
    inject: Callable[[], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """Steady non-blocking load (``args.invokes`` spread over FAULT_LOAD_S); a second in,
    ``inject`` breaks something (and mends it before it returns). Every accepted activation
    must end with exactly one record."""
    accepted: list[str] = []
    refused: Counter[str] = Counter()  # not accepted (the caller knows), by HTTP status
    gate = asyncio.Semaphore(args.in_flight)

    async def one() -> None:
        async with gate:
            try:
                async with bench.http.post(f"/api/v1/namespaces/_/actions/{name}",
                                           json={}) as resp:
                    body = await resp.json(content_type=None)
                    if resp.status == 202:
                        accepted.append(str(body["activationId"]))
                    else:
                        refused[str(resp.status)] += 1
            except aiohttp.ClientError as exc:
                refused[type(exc).__name__] += 1

    async def paced() -> None:
        calls = []
        for _ in range(args.invokes):
            calls.append(asyncio.ensure_future(one()))
            await asyncio.sleep(FAULT_LOAD_S / args.invokes)
        await asyncio.gather(*calls)

    started = time.monotonic()
    load = asyncio.ensure_future(paced())
    await asyncio.sleep(1.0)
    fault = await inject()
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
            "refused": sum(refused.values()), "refused_by": dict(refused), **fault,
            "all_records_after_s": round(time.monotonic() - started, 1),
            "by_invoker": _by_invoker(records),
            # Ran again after its first attempt was cut short (a later attempt).
            "attempted_again": sum(1 for r in records if r.attempts > 1)}


async def partition_invoker(cluster: HostCluster) -> dict[str, Any]:
    """The last invoker host cut off the network (its veth down) for PARTITION_S, longer than
    the initializers wait before they call it down and hand its queue to the others."""
    host = cluster.network.hosts[-1]
    cluster.network.partition(host.name)
    try:
        await asyncio.sleep(PARTITION_S)
    finally:
        cluster.network.heal(host.name)
    return {"host": host.name, "partitioned_s": PARTITION_S}


async def kill_rabbitmq_leader(cluster: HostCluster) -> dict[str, Any]:
    """SIGKILL the RabbitMQ node that leads ``ft.activations`` (the gateway's and the
    initializer's own node, as a rule); it stays down NODE_DOWN_S, then starts again."""
    rabbit = cluster.rabbit
    host = await asyncio.to_thread(rabbit.leader, ACTIVATIONS)
    rabbit.kill_node(host)
    await asyncio.sleep(NODE_DOWN_S)
    successor = await asyncio.to_thread(rabbit.leader, ACTIVATIONS)
    await asyncio.to_thread(rabbit.restart_node, host)
    return {"node": rabbit.node(host), "down_s": NODE_DOWN_S,
            "new_leader": rabbit.node(successor)}


async def kill_redis_primary(cluster: HostCluster) -> dict[str, Any]:
    """SIGKILL the Redis primary; the Sentinels promote the replica. The old primary starts
    again (as a restarted service would) once the new one is named, and becomes its replica."""
    group = cluster.redis
    primary = await asyncio.to_thread(group.current_primary)
    if primary is None:
        raise RuntimeError("the Sentinels name no Redis primary")
    group.kill_server(primary)
    killed_at = time.monotonic()
    while (successor := await asyncio.to_thread(group.current_primary)) in (primary, None):
        if time.monotonic() - killed_at > FAILOVER_WAIT_S:
            raise RuntimeError(f"no Redis failover within {FAILOVER_WAIT_S:.0f} s")
        await asyncio.sleep(0.2)
    promoted_after = time.monotonic() - killed_at
    group.start_server(primary)
    return {"primary": primary.name, "promoted": successor.name,
            "promoted_after_s": round(promoted_after, 1)}


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
        if args.keep_logs:
            print(f"logs: {base / 'logs'}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    out = report(steps, args) | {"elapsed_s": round(time.monotonic() - started, 1)}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
        print(f"JSON: {args.json}")


if __name__ == "__main__":
    main()
