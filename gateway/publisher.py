"""Accepted activations onto ``ft.activations``, with group commit: the requests of one turn
of the event loop go out as one confirmed ``ActivationBatch`` (a lone one as itself), and each
caller is answered once the broker confirmed its batch. Under load this replaces a publish and
a confirm per activation, and the initializer's delivery and ack of each, with one per batch.

Compositions (sequences, conductor actions) go alone: the initializer acks their message
only when the whole composition ran.

A refused publish is tried again for up to ``PUBLISH_PATIENCE_S``: on a RabbitMQ cluster, the
node leading ``ft.activations`` dying makes the others nack publishes, or return them as
unroutable, until they have elected a new leader (about three seconds), and the gateway's
connection moves to another node meanwhile. The caller waits through that instead of getting
a 503. A message the broker refused was not taken, so sending it again duplicates nothing that
was; and should it have been, the one record per activation id still holds."""

from __future__ import annotations

import asyncio
import logging

from bus.broker import ACTIVATIONS, Broker
from bus.coalesce import Coalescer
from bus.models import ActivationRequest

MAX_BATCH = 32
PUBLISH_PATIENCE_S = 10.0

log = logging.getLogger(__name__)


class ActivationPublisher:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._batches: Coalescer[ActivationRequest] = Coalescer(
            self._send, "activations", max_batch=MAX_BATCH)

    async def publish(self, activation: ActivationRequest) -> None:
        """Returns once the broker took responsibility for ``activation``; raises if it did
        not within ``PUBLISH_PATIENCE_S``."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + PUBLISH_PATIENCE_S
        delay = 0.05
        while True:
            try:
                if activation.composition:
                    await self._send([activation])
                else:
                    await self._batches.submit(activation)
                return
            except Exception as exc:
                # Unroutable too: ft.activations always exists (every process declares it),
                # so a return means its leader is away, which is what the wait is for.
                if loop.time() + delay > give_up_at:
                    raise
                log.info("publish of %s refused (%s); trying again", activation.activation_id,
                         exc)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 1.0)

    async def _send(self, activations: list[ActivationRequest]) -> None:
        await self.broker.publish_activations(activations, routing_key=ACTIVATIONS)
