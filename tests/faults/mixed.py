"""The mixed load every fault scenario runs: blocking and non-blocking invokes of one action
(``load.py``) beside a queue feed (``feed_load.py``), and their verdicts printed as one line."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from bus.store import Store
from tests.faults.feed_load import FeedLoad, FeedVerdict, feed_verdict, produce, setup_feed
from tests.faults.load import Load, Verdict, run_load, verdict

NS = "guest"


@dataclass
class Mixed:
    name: str
    invokes: asyncio.Task[Load]
    feed: FeedLoad
    feeding: asyncio.Task[None]
    amqp_url: str

    async def verdicts(self, store: Store, fault_at: float, label: str,
                       timeout: float = 45) -> tuple[Load, Verdict, FeedVerdict]:
        load = await self.invokes
        await self.feeding
        result = await verdict(store, NS, self.name, load, fault_at, timeout=timeout)
        fed = await feed_verdict(store, self.amqp_url, NS, self.feed, timeout=timeout)
        print(f"\n[{label}] {result.line()} | {fed.line()} | refused_calls={load.refused} "
              f"refused_publishes={self.feed.refused}")
        return load, result, fed


async def start_mixed(
    http: aiohttp.ClientSession, auth: str, amqp_url: str, name: str, total: int, *,
    gateways: Sequence[aiohttp.ClientSession] | None = None, messages: int = 120,
    per_second: float = 40, blocking_timeout_ms: int = 20_000,
) -> Mixed:
    """Sets up a feed, then starts invoking ``name`` ``total`` times and publishing
    ``messages`` to the feed's queue; both run until awaited by ``Mixed.verdicts``."""
    feed = await setup_feed(http, auth, uuid.uuid4().hex[:6])
    invokes = asyncio.create_task(run_load(gateways or http, name, total,
                                           blocking_timeout_ms=blocking_timeout_ms))
    feeding = asyncio.create_task(produce(amqp_url, feed, messages, per_second))
    return Mixed(name, invokes, feed, feeding, amqp_url)
