"""A process's own reply queue: whoever published an activation with ``reply_to`` waits here
for its ``ActivationDone`` (blocking invokes in the gateway; feed batches and sequences in the
initializer).

The queue is exclusive and auto-deleted, so it dies with the process; a reply sent after that
is dropped by the broker, and the record in Redis still answers. A waiter is registered before
its activation is published, so no reply can come first. Replies nobody waits for (the waiter
gave up, or a redelivered activation answered twice) are acked and dropped.
"""

from __future__ import annotations

import asyncio
import logging

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from bus.broker import Broker, reply_queue, settle
from bus.codec import unpack
from bus.models import ActivationDone, ActivationRecord

log = logging.getLogger(__name__)

# None: the process is shutting down and will not wait longer.
ReplyFuture = asyncio.Future[ActivationRecord | None]


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
