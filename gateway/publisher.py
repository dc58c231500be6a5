"""Accepted activations onto ``ft.activations``, with group commit: the requests of one turn
of the event loop go out as one confirmed ``ActivationBatch`` (a lone one as itself), and each
caller is answered once the broker confirmed its batch. Under load this replaces a publish and
a confirm per activation, and the initializer's delivery and ack of each, with one per batch.

Sequences go alone: the initializer acks their message only when the whole sequence ran."""

from __future__ import annotations

from bus.broker import ACTIVATIONS, Broker
from bus.coalesce import Coalescer
from bus.models import ActivationRequest
from bus.requests import SEQUENCE

MAX_BATCH = 32


class ActivationPublisher:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._batches: Coalescer[ActivationRequest] = Coalescer(
            self._send, "activations", max_batch=MAX_BATCH)

    async def publish(self, activation: ActivationRequest) -> None:
        """Returns once the broker took responsibility for ``activation``; raises if not."""
        if activation.action.kind == SEQUENCE:
            await self._send([activation])
        else:
            await self._batches.submit(activation)

    async def _send(self, activations: list[ActivationRequest]) -> None:
        await self.broker.publish_activations(activations, routing_key=ACTIVATIONS)
