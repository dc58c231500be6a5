"""This initializer's own reply queue: feed batches wait here for the ``ActivationDone`` of the
rule activations they caused.

The queue is exclusive and auto-deleted, so it dies with the process; a reply sent after that
is dropped by the broker, and the redelivered messages are fired again by the feed's next
owner. A waiter is registered before its activation is published, so no reply can come first.
"""

from __future__ import annotations

import asyncio
import logging

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from bus.broker import Broker, reply_queue, settle
from bus.codec import unpack
from bus.models import ActivationDone, ActivationRecord

log = logging.getLogger(__name__)

ReplyFuture = asyncio.Future[ActivationRecord]


class ReplyWaiters:
    def __init__(self, broker: Broker, owner_id: str, *, prefetch: int = 256) -> None:
        self.broker = broker
        self.queue_name = reply_queue(owner_id)
        self._prefetch = prefetch
        self._pending: dict[str, ReplyFuture] = {}
        self._queue: AbstractQueue | None = None

    def __len__(self) -> int:
        return len(self._pending)

    async def start(self) -> None:
        self._queue = await self.broker.consume(
            self.queue_name, self._on_reply, prefetch=self._prefetch, exclusive=True)

    async def close(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        if self._queue is not None:
            await self.broker.stop_consuming(self._queue)
            self._queue = None

    def register(self, activation_id: str) -> ReplyFuture:
        future: ReplyFuture = asyncio.get_running_loop().create_future()
        self._pending[activation_id] = future
        return future

    def discard(self, activation_id: str) -> None:
        future = self._pending.pop(activation_id, None)
        if future is not None and not future.done():
            future.cancel()

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
