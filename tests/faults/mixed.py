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
    load: Load  # filled by ``invokes`` as calls are answered
    total: int
    messages: int

    async def at_fault(self, store: Store, label: str) -> int:
        """Call right after the fault: how much work it hit. Activations accepted but still
        without a record, and calls not answered yet, were in flight; a fault that came after
        all the work was done would prove nothing, so that fails here. Also prints how far
        the feed's producer had come (it keeps publishing through the fault)."""
        accepted = list(self.load.accepted)
        pending = sum([not await store.has_record(aid) for aid in accepted])
        unanswered = self.load.sent - len(accepted)
        print(f"\n[{label}] in flight at the fault: activations_without_record={pending} "
              f"calls_unanswered={unanswered} calls_not_sent={self.total - self.load.sent} "
              f"feed_published={len(self.feed.sent)}/{self.messages}")
        assert pending + unanswered > 0, f"[{label}] the fault hit no work in flight"
        return pending + unanswered

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
    gateways: Sequence[aiohttp.ClientSession] | None = None, messages: int = 60,
    per_second: float = 20, blocking_timeout_ms: int = 20_000,
) -> Mixed:
    """Sets up a feed, then starts invoking ``name`` ``total`` times and publishing
    ``messages`` to the feed's queue; both run until awaited by ``Mixed.verdicts``.

    60 messages at 20/s keep the producer busy for 3 s, past the faults (1.5-2 s in): the
    feed has work in flight when they hit, with half the handler activations of 120 at 40/s.
    """
    feed = await setup_feed(http, auth, uuid.uuid4().hex[:6])
    load = Load()
    invokes = asyncio.create_task(run_load(gateways or http, name, total,
                                           blocking_timeout_ms=blocking_timeout_ms, load=load))
    feeding = asyncio.create_task(produce(amqp_url, feed, messages, per_second))
    return Mixed(name, invokes, feed, feeding, amqp_url, load, total, messages)
