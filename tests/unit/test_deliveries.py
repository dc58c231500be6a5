"""A message carrying a batch is acked once, when its last activation is done with."""

from __future__ import annotations

from typing import Any

from invoker.deliveries import Delivery


class Message:
    """Records what was said to the broker about it (pure logic: no RabbitMQ needed)."""

    message_id = "m"

    def __init__(self) -> None:
        self.said: list[str] = []

    async def ack(self) -> None:
        self.said.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.said.append(f"nack requeue={requeue}")


async def test_the_last_activation_acks_the_batch() -> None:
    message = Message()
    delivery = Delivery(message, 3)  # type: ignore[arg-type]
    await delivery.done()
    await delivery.done()
    assert message.said == [] and delivery.alone
    await delivery.done()
    assert message.said == ["ack"]


async def test_a_message_alone_is_given_back_whole() -> None:
    message: Any = Message()
    delivery = Delivery(message, 1)
    assert delivery.alone
    await delivery.give_back()
    assert message.said == ["nack requeue=True"]
