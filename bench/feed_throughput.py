"""Queue-feed throughput: messages per second from the first publish to the last successful
activation record, for a no-op action, at a few batch sizes.

Starts its own cluster (gateway, initializer, one invoker) on a dedicated RabbitMQ vhost and
Redis database, publishes N messages per batch size to a queue bound to a trigger by a queue
feed, prints a table and writes JSON to bench/results/.

    .venv/bin/python -m bench.feed_throughput [--messages 2000] [--batch-sizes 1,10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
import uuid
from typing import Any

import aio_pika
import uvloop

from bench.cluster import NS, BenchCluster, running_cluster
from bench.cpu_budget import cpu_seconds
from bench.env import RESULTS
from bench.suite import STEM_CELLS
from bus.events import FEEDS_EXCHANGE, EntityRef, FeedChanged, FeedDoc, RuleLink, TriggerDoc
from bus.ids import now_ms
from cli.services import ensure_all

NOOP = "def main(args):\n    return {'n': len(args['messages'])}\n"
WARM_UP_MESSAGES = 64


class Bench:
    def __init__(self, bc: BenchCluster) -> None:
        self.bc = bc
        self.store = bc.store
        self.broker = bc.broker
        self.amqp_url = bc.services.amqp_url

    def cpu(self) -> dict[str, float]:
        return {role: cpu_seconds(pid) for role, pid in self.bc.pids().items()}

    async def feed(self, trigger: str, action: str, queue: str, batch_size: int,
                   concurrency: int, window_ms: int) -> None:
        doc = TriggerDoc(namespace=NS, name=trigger, rules={
            f"{NS}/{trigger}-rule": RuleLink(action=EntityRef(path=NS, name=action))})
        await self.store.put_entity("triggers", NS, trigger, doc, updated=now_ms(),
                                    replaces=None)
        feed = FeedDoc(namespace=NS, trigger=trigger, kind="queue", queue=queue,
                       batch_size=batch_size, max_concurrency=concurrency,
                       max_batching_window_ms=window_ms, created=now_ms())
        await self.store.put_feed(feed)
        await self.broker.publish(FeedChanged(key=feed.key), exchange=FEEDS_EXCHANGE,
                                  routing_key="")

    async def publish(self, queue: str, count: int) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue, durable=True)
        for start in range(0, count, 200):
            await asyncio.gather(*(
                channel.default_exchange.publish(
                    aio_pika.Message(json.dumps({"n": n}).encode(),
                                     content_type="application/json",
                                     message_id=uuid.uuid4().hex,
                                     delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue)
                for n in range(start, min(count, start + 200))))
        await connection.close()

    async def processed(self, action: str, seen: dict[str, tuple[int, int]]) -> int:
        """Messages processed by successful activations of ``action``. ``seen`` (activation
        id -> (messages, end)) carries over between calls so each reads only recent records:
        the benchmark must not eat the CPU it measures."""
        since = max((end for _, end in seen.values()), default=0) - 30_000
        records = await self.store.list_records(NS, name=action, since=since, limit=1_000_000)
        for r in records:
            if not r.response.success:
                raise RuntimeError(f"activation {r.activationId} of {action} failed")
            seen[r.activationId] = (r.response.result["n"], r.end)
        return sum(n for n, _ in seen.values())

    async def wait_for(
        self, action: str, messages: int, seen: dict[str, tuple[int, int]], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while (done := await self.processed(action, seen)) < messages:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{done}/{messages} messages processed in {timeout} s")
            await asyncio.sleep(0.5)

    async def run(self, messages: int, batch_size: int, concurrency: int,
                  window_ms: int) -> dict[str, Any]:
        tag = uuid.uuid4().hex[:6]
        action, trigger, queue = f"noop-{tag}", f"t-{tag}", f"bench-{tag}"
        await self.bc.create_action(action, NOOP)
        await self.feed(trigger, action, queue, batch_size, concurrency, window_ms)
        # Warm containers and connections first; measure only the steady run.
        seen: dict[str, tuple[int, int]] = {}
        await self.publish(queue, WARM_UP_MESSAGES)
        await self.wait_for(action, WARM_UP_MESSAGES, seen, 120)
        warm = set(seen)
        cpu_before = self.cpu()
        started = now_ms()
        await self.publish(queue, messages)
        published = now_ms()
        await self.wait_for(action, WARM_UP_MESSAGES + messages, seen, 600)
        last_end = max(end for _, end in seen.values())
        elapsed_s = (last_end - started) / 1000
        # Includes the polling tail after the last record: an upper bound per component.
        cpu = {name: round(after - cpu_before[name], 2) for name, after in self.cpu().items()}
        return {
            "messages": messages, "batch_size": batch_size, "max_concurrency": concurrency,
            "window_ms": window_ms, "activations": len(set(seen) - warm),
            "publish_s": round((published - started) / 1000, 3),
            "elapsed_s": round(elapsed_s, 3),
            "msgs_per_s": round(messages / elapsed_s, 1),
            "cpu_s": cpu,
        }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    ensure_all(lambda m: print(f".. {m}"))
    results: dict[str, Any] = {}
    async with running_cluster("ft-bench-feeds", stem_cells=STEM_CELLS) as bc:
        bench = Bench(bc)
        for batch_size in args.batch_sizes:
            name = f"batch {batch_size}, {args.concurrency} in flight"
            results[name] = await bench.run(args.messages, batch_size, args.concurrency,
                                            args.window_ms)
            print(f".. {name}: {results[name]['msgs_per_s']} msgs/s")
    return results


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{'run':<28} {'msgs':>6} {'activations':>11} {'publish s':>9} {'elapsed s':>9} "
          f"{'msgs/s':>8}  cpu s")
    for name, row in results.items():
        print(f"{name:<28} {row['messages']:>6} {row['activations']:>11} "
              f"{row['publish_s']:>9.3f} {row['elapsed_s']:>9.3f} {row['msgs_per_s']:>8.1f}  "
              f"{json.dumps(row['cpu_s'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 10])
    parser.add_argument("--concurrency", type=int, default=8, help="batches in flight")
    parser.add_argument("--window-ms", type=int, default=0, help="max batching window")
    args = parser.parse_args()
    results = uvloop.run(main_async(args))
    print_table(results)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"feed_throughput-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"machine": platform.node(), "cores": os.cpu_count(),
                               "args": vars(args), "results": results}, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
