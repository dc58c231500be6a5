"""Which feeds exist, and which queue feeds this initializer runs.

Every initializer keeps every feed document (re-read at start, on each ``FeedChanged`` and
every lease period). A queue feed runs where its lease ``feed:<key>`` is held: the holder
renews it every third of its TTL and stops the feed the moment a renewal fails; everyone else
tries to take it each period, so a crashed holder's feed moves on once its lease expires.
Alarm feeds need no lease (every initializer evaluates them; tick claims pick one firer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aio_pika.abc import AbstractIncomingMessage

from bus.broker import Broker, settle, spawn
from bus.codec import unpack
from bus.config import Settings
from bus.events import FEEDS_EXCHANGE, FeedChanged, FeedDoc
from bus.replies import ReplyWaiters
from bus.store import Store
from initializer.fanout import FireFanout
from initializer.queue_feed import QueueFeedRunner

log = logging.getLogger(__name__)

RESERVED_QUEUE_PREFIXES = ("ft.", "amq.")
STOP_GRACE_S = 10.0  # batches in flight may finish when a feed is updated or we shut down


def lease_name(key: str) -> str:
    return f"feed:{key}"


class FeedManager:
    def __init__(
        self, owner_id: str, *, store: Store, broker: Broker, fanout: FireFanout,
        waiters: ReplyWaiters, settings: Settings,
    ) -> None:
        self.owner_id = owner_id
        self.store = store
        self.broker = broker
        self.fanout = fanout
        self.waiters = waiters
        self.settings = settings
        self.lease_ttl_ms = settings.feed_lease_ttl_ms
        self.docs: dict[str, FeedDoc] = {}
        self.runners: dict[str, QueueFeedRunner] = {}
        self._lock = asyncio.Lock()  # one reconciliation at a time
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()
        self._refused: set[str] = set()  # feeds on queues we will not consume, warned once

    async def start(self) -> None:
        await self.broker.consume(None, self._on_changed, prefetch=64, bind_to=FEEDS_EXCHANGE)
        await self._reconcile_all()
        self._loop_task = asyncio.create_task(self._lease_loop())

    async def stop(self) -> None:
        """Finish batches in flight, then free the leases so others take over at once."""
        if self._loop_task is not None:
            self._loop_task.cancel()
        async with self._lock:
            keys = list(self.runners)
            await asyncio.gather(*(self._stop_runner(key, graceful=True) for key in keys))
        if self._stopping:
            await asyncio.wait(list(self._stopping), timeout=STOP_GRACE_S)
        for key in keys:
            with contextlib.suppress(Exception):
                await self.store.release_lease(lease_name(key), self.owner_id)

    # -- triggers of reconciliation ----------------------------------------------------------

    async def _on_changed(self, message: AbstractIncomingMessage) -> None:
        try:
            changed = unpack(message.body, FeedChanged)
            async with self._lock:
                doc = None if changed.deleted else await self.store.get_feed(changed.key)
                self._remember(changed.key, doc)
                await self._reconcile(changed.key)
        except Exception:
            log.exception("feed change %s not applied (the next lease period will)",
                          message.message_id)
        finally:
            await settle(message)

    async def _lease_loop(self) -> None:
        period = self.lease_ttl_ms / 3000
        while True:
            await asyncio.sleep(period)
            try:
                await self._reconcile_all()
            except Exception:
                log.exception("feed reconciliation failed")

    async def _reconcile_all(self) -> None:
        async with self._lock:
            try:
                keys = await self.store.feed_keys()
                docs = await asyncio.gather(*(self.store.get_feed(k) for k in keys))
            except Exception as exc:
                # Without Redis no lease can be renewed either: stop what we run.
                log.warning("cannot read feeds: %s", exc)
                await asyncio.gather(*(self._stop_runner(k, graceful=False)
                                       for k in list(self.runners)))
                return
            fresh = {k: d for k, d in zip(keys, docs, strict=True) if d is not None}
            for key in set(self.docs) | set(fresh):
                self._remember(key, fresh.get(key))
            for key in set(self.docs) | set(self.runners):
                await self._reconcile(key)

    def _remember(self, key: str, doc: FeedDoc | None) -> None:
        if doc is None:
            self.docs.pop(key, None)
        else:
            self.docs[key] = doc

    # -- reconciliation ----------------------------------------------------------------------

    async def _reconcile(self, key: str) -> None:
        """Make this initializer run ``key``'s queue feed exactly when it holds the lease and
        the feed exists as it is now stored."""
        doc = self.docs.get(key)
        runner = self.runners.get(key)
        wanted = doc is not None and doc.kind == "queue" and self._consumable(doc)
        if runner is not None and (not wanted or runner.doc != doc):
            await self._stop_runner(key, graceful=True)
            runner = None
            if not wanted:
                with contextlib.suppress(Exception):
                    await self.store.release_lease(lease_name(key), self.owner_id)
        if not wanted or doc is None:
            return
        try:
            held = await self.store.acquire_lease(lease_name(key), self.owner_id,
                                                  self.lease_ttl_ms)
        except Exception as exc:
            log.warning("lease %s not renewed: %s", key, exc)
            held = False
        if not held:
            if runner is not None:
                log.warning("lost the lease of feed %s: stopping it", key)
                await self._stop_runner(key, graceful=False)
            return
        if runner is None:
            await self._start_runner(doc)

    def _consumable(self, doc: FeedDoc) -> bool:
        """The platform's own queues are never a feed's (they would lose work to it)."""
        if doc.queue and not doc.queue.startswith(RESERVED_QUEUE_PREFIXES):
            return True
        if doc.key not in self._refused:
            log.warning("feed %s: queue %r cannot be consumed by a feed", doc.key, doc.queue)
            self._refused.add(doc.key)
        return False

    async def _start_runner(self, doc: FeedDoc) -> None:
        runner = QueueFeedRunner(doc, broker=self.broker, store=self.store, fanout=self.fanout,
                                 waiters=self.waiters, settings=self.settings)
        try:
            await runner.start()
        except Exception:
            log.exception("feed %s could not start; leaving it to others for now", doc.key)
            await runner.abort()
            with contextlib.suppress(Exception):
                await self.store.release_lease(lease_name(doc.key), self.owner_id)
            return
        self.runners[doc.key] = runner

    async def _stop_runner(self, key: str, *, graceful: bool) -> None:
        runner = self.runners.pop(key, None)
        if runner is None:
            return
        if graceful:
            # In the background: the lock must stay free for renewing the other leases.
            spawn(runner.stop(STOP_GRACE_S), self._stopping)
        else:
            await runner.abort()
