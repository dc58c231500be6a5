"""One message from the invoker's queue may carry several activations (a batch the initializer
placed in one turn). The message is acked once every one of them is done with — answered, or
handed back for another invoker — so a crash before then redelivers what is not finished, and
the records (first write wins) make redelivering the finished ones harmless."""

from __future__ import annotations

from aio_pika.abc import AbstractIncomingMessage

from bus.broker import activation_requests_or_dead_letter, settle
from bus.models import ActivationRequest


class Delivery:
    def __init__(self, message: AbstractIncomingMessage, activations: int) -> None:
        self.message = message
        self.pending = activations

    @property
    def alone(self) -> bool:
        """It carries nothing else still pending: it can be given back to the broker as is."""
        return self.pending == 1

    async def done(self) -> None:
        """One of its activations is done with; the last one acks the message."""
        self.pending -= 1
        if self.pending == 0:
            await settle(self.message)

    async def give_back(self) -> None:
        """Redelivery of what it carries (only when it is ``alone``)."""
        self.pending = 0
        await settle(self.message, ack=False, requeue=True)


async def receive(
    message: AbstractIncomingMessage, *, draining: bool
) -> tuple[Delivery, list[ActivationRequest]] | None:
    """What an invoker's queue handed over, to take on; None when there is nothing to take
    (an unreadable message, dead-lettered; or this invoker is draining: back to the queue)."""
    requests = await activation_requests_or_dead_letter(message)
    if requests is None:
        return None
    if draining:
        await settle(message, ack=False, requeue=True)
        return None
    return Delivery(message, len(requests)), requests
