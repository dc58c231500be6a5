"""Blocking invokes wait here for their ``ActivationDone`` on this gateway's reply queue.

A waiter is registered before the request is published, so a reply can never arrive before
its waiter. Replies nobody waits for (the waiter gave up, or a redelivered activation answered
twice) are acked and dropped: the record is in Redis either way.
"""

from __future__ import annotations

import asyncio
import logging

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from bus.broker import Broker, reply_queue, settle
from bus.codec import unpack
from bus.models import ActivationDone, ActivationRecord

log = logging.getLogger(__name__)

# None resolves a waiter without a record: the gateway is shutting down.
ReplyFuture = asyncio.Future[ActivationRecord | None]


class Waiters:
    def __init__(self, broker: Broker, gateway_id: str, *, prefetch: int = 256) -> None:
        self.broker = broker
        self.gateway_id = gateway_id
        self.queue_name = reply_queue(gateway_id)
        self._prefetch = prefetch
        self._pending: dict[str, ReplyFuture] = {}
        self._queue: AbstractQueue | None = None

    def __len__(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._queue = await self.broker.consume(
            self.queue_name, self._on_reply, prefetch=self._prefetch, exclusive=True
        )

    def register(self, activation_id: str) -> ReplyFuture:
        future: ReplyFuture = asyncio.get_running_loop().create_future()
        self._pending[activation_id] = future
        return future

    def discard(self, activation_id: str) -> None:
        self._pending.pop(activation_id, None)

    def release_all(self) -> None:
        """Answer every waiting request now (with 202) instead of holding shutdown."""
        for future in self._pending.values():
            if not future.done():
                future.set_result(None)
        self._pending.clear()

    async def close(self) -> None:
        """Stop consuming; the exclusive, auto-delete reply queue goes with its consumer."""
        self.release_all()
        if self._queue is not None:
            await self.broker.stop_consuming(self._queue)
            self._queue = None

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        try:
            done = unpack(message.body, ActivationDone)
        except Exception:
            log.exception("undecodable reply %s dropped", message.message_id)
        else:
            future = self._pending.pop(done.activation_id, None)
            if future is not None and not future.done():
                future.set_result(done.record)
        await settle(message)
