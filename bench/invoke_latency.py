"""Warm blocking invoke latency, stem-cell and cold start costs, beside the raw floors.

Starts its own cluster (gateway, initializer, one invoker) on a dedicated RabbitMQ vhost and
Redis database, measures, prints a table and writes JSON to bench/results/.

    .venv/bin/python -m bench.invoke_latency [--sequential 300] [--concurrent 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import redis.asyncio as aioredis

from bus.config import GUEST_KEY, GUEST_UUID
from bus.store import Store
from cli.cluster import LocalCluster, free_port, settings_env
from cli.services import ensure_all

RESULTS = Path(__file__).parent / "results"
VHOST = "ft-bench"
REDIS_DB = 15
NOOP = "def main(args):\n    return {'ok': True}\n"


def _percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "p50_ms": round(statistics.median(samples_ms), 3),
        "p99_ms": round(_percentile(samples_ms, 99), 3),
        "mean_ms": round(statistics.fmean(samples_ms), 3),
    }




def _fresh_vhost() -> str:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", VHOST], capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", VHOST], check=True, capture_output=True)
    subprocess.run(["rabbitmqctl", "-q", "set_permissions", "-p", VHOST, "guest", ".*", ".*",
                    ".*"], check=True, capture_output=True)
    return f"amqp://guest:guest@127.0.0.1:5672/{VHOST}"


# -- floors --------------------------------------------------------------------------------

async def floor_amqp_round_trip(amqp_url: str, n: int) -> dict[str, float]:
    """One request/reply over RabbitMQ: two one-way hops, the unit every activation pays."""
    conn = await aio_pika.connect(amqp_url)
    ch = await conn.channel()
    requests = await ch.declare_queue(exclusive=True)
    replies = await ch.declare_queue(exclusive=True)
    got: asyncio.Queue[None] = asyncio.Queue()

    async def echo(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        await ch.default_exchange.publish(aio_pika.Message(msg.body), replies.name,
                                          mandatory=False)

    async def on_reply(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
        got.put_nowait(None)

    await requests.consume(echo, no_ack=True)
    await replies.consume(on_reply, no_ack=True)
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await ch.default_exchange.publish(aio_pika.Message(b"x"), requests.name)
        await got.get()
        samples.append((time.perf_counter() - t) * 1000)
    await conn.close()
    return _summary(samples[n // 10:])


async def floor_redis_get(redis_url: str, n: int) -> dict[str, float]:
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    await client.set("ft:bench:key", b"x" * 100)
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await client.get("ft:bench:key")
        samples.append((time.perf_counter() - t) * 1000)
    await client.aclose()
    return _summary(samples[n // 10:])


# -- through the platform ------------------------------------------------------------------

async def _create(http: aiohttp.ClientSession, name: str, code: str, **extra: Any) -> None:
    body = {"exec": {"kind": "python:3.11", "code": code}, **extra}
    async with http.put(f"/api/v1/namespaces/_/actions/{name}?overwrite=true", json=body) as r:
        assert r.status == 200, await r.text()


async def _invoke(http: aiohttp.ClientSession, name: str) -> dict[str, Any]:
    async with http.post(f"/api/v1/namespaces/_/actions/{name}?blocking=true", json={}) as r:
        body = await r.json()
        assert r.status == 200, body
        return body


async def warm_sequential(http: aiohttp.ClientSession, n: int) -> dict[str, float]:
    await _create(http, "noop", NOOP)
    for _ in range(20):
        await _invoke(http, "noop")
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await _invoke(http, "noop")
        samples.append((time.perf_counter() - t) * 1000)
    return _summary(samples)


async def warm_concurrent(http: aiohttp.ClientSession, total: int, workers: int) -> dict[str, Any]:
    await _create(http, "noop", NOOP)
    await asyncio.gather(*(_invoke(http, "noop") for _ in range(workers)))  # warm them all
    samples: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t = time.perf_counter()
            await _invoke(http, "noop")
            samples.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    elapsed = time.perf_counter() - start
    return {**_summary(samples), "per_s": round(len(samples) / elapsed, 1)}


async def first_invokes(
    http: aiohttp.ClientSession, store: Store, n: int, memory: int
) -> dict[str, Any]:
    """First invoke of a fresh action: a stem cell (256 MB, the prewarmed size) or a cold
    start (any other size). Pauses let the invoker refill its stem cells in between."""
    wall, init, kinds = [], [], set()
    for _ in range(n):
        name = f"first-{uuid.uuid4().hex[:8]}"
        await _create(http, name, NOOP, limits={"memory": memory})
        t = time.perf_counter()
        record = await _invoke(http, name)
        wall.append((time.perf_counter() - t) * 1000)
        init.append(next(a["value"] for a in record["annotations"] if a["key"] == "initTime"))
        stored = await store.get_record(record["activationId"])
        kinds.add(stored.container_start if stored else None)
        await asyncio.sleep(2.0)
    return {**_summary(wall), "init_p50_ms": statistics.median(init), "starts": sorted(kinds)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    ensure_all(lambda m: print(f".. {m}"))
    amqp_url = _fresh_vhost()
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    r = aioredis.Redis.from_url(redis_url)
    await r.flushdb()
    await r.aclose()
    work_dir = Path(tempfile.mkdtemp(prefix="ft-bench-"))
    port = free_port()
    cluster = LocalCluster(
        env=settings_env(amqp_url=amqp_url, redis_url=redis_url, port=port, work_dir=work_dir,
                         stem_cells=[{"kind": "python:3.11", "memory": 256, "count": 2}]),
        invoker_ids=["bench0"], log_dir=work_dir,
    )
    results: dict[str, Any] = {}
    cluster.start()
    try:
        await asyncio.to_thread(cluster.wait_for_gateway)
        await asyncio.sleep(3)  # stem cells up
        results["floor: aio-pika round trip"] = await floor_amqp_round_trip(amqp_url, 2000)
        results["floor: Redis GET"] = await floor_redis_get(redis_url, 2000)
        auth = {"Authorization": aiohttp.encode_basic_auth(GUEST_UUID, GUEST_KEY)}
        store = Store.from_url(redis_url)
        async with aiohttp.ClientSession(base_url=cluster.api_host, headers=auth) as http:
            results["warm blocking invoke, sequential"] = await warm_sequential(
                http, args.sequential)
            # Before the concurrent run: that one fills the pool with warm containers, and
            # then a new action would (rightly) evict one and start cold.
            results["first invoke: stem cell (256 MB)"] = await first_invokes(
                http, store, args.starts, 256)
            results["first invoke: cold start (128 MB)"] = await first_invokes(
                http, store, args.starts, 128)
            results[f"warm blocking invoke, {args.workers} concurrent"] = await warm_concurrent(
                http, args.concurrent, args.workers)
        await store.close()
    finally:
        cluster.stop()
    return results


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{'measurement':<42} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9}  extra")
    for name, row in results.items():
        extra = {k: v for k, v in row.items() if k not in ("n", "p50_ms", "p99_ms", "mean_ms")}
        print(f"{name:<42} {row['n']:>5} {row['p50_ms']:>9.3f} {row['p99_ms']:>9.3f} "
              f"{row['mean_ms']:>9.3f}  {json.dumps(extra) if extra else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--concurrent", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--starts", type=int, default=8)
    args = parser.parse_args()
    import uvloop

    results = uvloop.run(main_async(args))
    print_table(results)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"invoke_latency-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"machine": platform.node(), "cores": __import__("os").cpu_count(),
                               "results": results}, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
