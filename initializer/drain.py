"""Rescheduling a dead invoker's work: while an invoker is down, the one initializer holding
the lease ``drain:<invoker>`` consumes its durable queue and hands every request back to
``ft.activations`` (attempt + 1) for placement elsewhere.

Each message is acked only after the re-publish was confirmed, so a crash of the drainer
means redelivery, never loss. A request that already has its record ran before the invoker
died (its ack was lost): it is just acked. Activations the invoker had taken but not acked
come back to its queue when its connection dies (SIGKILL), and get drained with the rest;
a frozen invoker keeps them, which the deadline sweep covers.
"""

from __future__ import annotations

import logging

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from bus.broker import (
    ACTIVATIONS,
    Broker,
    activation_requests_or_dead_letter,
    invoker_queue,
    settle,
)
from bus.store import Store

log = logging.getLogger(__name__)

DRAIN_PREFETCH = 32


def lease_name(invoker_id: str) -> str:
    return f"drain:{invoker_id}"


class QueueDrain:
    """Drains one invoker's queue until stopped."""

    def __init__(self, store: Store, broker: Broker, invoker_id: str) -> None:
        self.store = store
        self.broker = broker
        self.invoker_id = invoker_id
        self.moved = 0
        self._channel: AbstractChannel | None = None

    async def start(self) -> None:
        # A channel of its own: closing it on stop returns whatever is unacked to the queue.
        self._channel = await self.broker.connection.channel()
        await self._channel.set_qos(prefetch_count=DRAIN_PREFETCH)
        # Passively declared, so the robust channel restores it and its consumer after a
        # broker restart (see Broker.consume).
        queue = await self._channel.declare_queue(invoker_queue(self.invoker_id), passive=True)
        await queue.consume(self._on_message)
        log.warning("invoker %s is down: draining its queue", self.invoker_id)

    async def stop(self) -> None:
        if self._channel is not None:
            try:
                await self._channel.close()
            except Exception as exc:
                log.warning("closing the drain of %s: %s", self.invoker_id, exc)
            self._channel = None
        log.info("stopped draining %s (%d rescheduled)", self.invoker_id, self.moved)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        requests = await activation_requests_or_dead_letter(message)
        if requests is None:
            return
        try:
            again = [req.model_copy(update={"attempt": req.attempt + 1, "held_by": None})
                     for req in requests if not await self.store.has_record(req.activation_id)]
            if again:
                await self.broker.publish_activations(again, routing_key=ACTIVATIONS)
                self.moved += len(again)
        except Exception as exc:
            log.warning("could not reschedule %s: %s", message.message_id, exc)
            await settle(message, ack=False, requeue=True)
            return
        await settle(message)
