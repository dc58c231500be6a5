"""Waiting for an activation by id: ``GET .../activations/{id}?wait=<ms>`` answers the record
the moment it is written, so a client holding an activation id (an asynchronous invoke, a
blocking one that outlived the server's wait) needs no polling loop.

Every finished activation is announced on the topic exchange ``ft.activation-events``
(``<namespace>.<action>.<status>``). The gateway keeps one exclusive queue on it, bound to
``<namespace>.#`` only while someone of that namespace waits, so it hears nothing when nobody
does. An event only wakes a waiter: the record in Redis is the answer, read after the queue is
bound (a record written just before is found), and read again every few seconds in case an
event was lost (they are advisory) or an activation ends without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from bus.broker import Broker
from bus.events import ACTIVATION_EVENTS
from bus.models import ActivationRecord

log = logging.getLogger(__name__)

RECHECK_S = 3.0  # a lost event costs a waiter at most this much

Lookup = Callable[[], Awaitable[ActivationRecord | None]]


class ActivationWatch:
    def __init__(self, broker: Broker, *, recheck_s: float = RECHECK_S) -> None:
        self.broker = broker
        self.recheck_s = recheck_s
        self._queue: AbstractQueue | None = None
        self._waiting: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._bound: Counter[str] = Counter()
        self._binding = asyncio.Lock()
        self._closing = asyncio.Event()

    async def start(self) -> None:
        self._queue = await self.broker.consume(None, self._on_event, prefetch=256, auto_ack=True)

    def release_all(self) -> None:
        """Shutting down: every waiter answers with what the store holds now."""
        self._closing.set()

    async def close(self) -> None:
        self.release_all()
        if self._queue is not None:
            await self.broker.stop_consuming(self._queue)
            self._queue = None

    async def wait(
        self, namespace: str, activation_id: str, wait_s: float, lookup: Lookup
    ) -> ActivationRecord | None:
        """``lookup()``'s record, waiting up to ``wait_s`` for it to exist."""
        if wait_s <= 0 or self._queue is None:
            return await lookup()
        woken = asyncio.Event()
        self._waiting[activation_id].add(woken)
        try:
            await self._bind(namespace)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait_s
            while (record := await lookup()) is None:
                left = deadline - loop.time()
                if left <= 0 or self._closing.is_set():
                    return None
                woken.clear()
                await _first_of(woken, self._closing, timeout=min(left, self.recheck_s))
            return record
        finally:
            waiters = self._waiting[activation_id]
            waiters.discard(woken)
            if not waiters:
                del self._waiting[activation_id]
            await self._unbind(namespace)

    async def _bind(self, namespace: str) -> None:
        async with self._binding:
            if self._bound[namespace] == 0 and self._queue is not None:
                try:
                    await self._queue.bind(ACTIVATION_EVENTS, routing_key=f"{namespace}.#")
                except Exception as exc:  # the broker is away: the store is read as before
                    log.warning("could not bind activation events of %s: %s", namespace, exc)
            self._bound[namespace] += 1

    async def _unbind(self, namespace: str) -> None:
        async with self._binding:
            self._bound[namespace] -= 1
            if self._bound[namespace] > 0:
                return
            del self._bound[namespace]
            if self._queue is not None:
                try:
                    await self._queue.unbind(ACTIVATION_EVENTS, routing_key=f"{namespace}.#")
                except Exception as exc:  # the queue went with its channel: nothing is bound
                    log.warning("could not unbind activation events of %s: %s", namespace, exc)

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        for woken in self._waiting.get(message.message_id or "", ()):
            woken.set()


async def _first_of(*events: asyncio.Event, timeout: float) -> None:
    """Until one of ``events`` is set or ``timeout`` passed."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await waiting
