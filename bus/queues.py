"""Declaring queues that users may own too (a queue feed's source and dead-letter queues, a
destination queue): the gateway when a feed is created, the initializer when it runs one."""

from __future__ import annotations

import contextlib

import aiormq
from aio_pika.abc import AbstractRobustConnection


async def ensure_queue(
    connection: AbstractRobustConnection, name: str, arguments: dict[str, object] | None = None
) -> None:
    """Use the queue as it is if it exists (whatever its arguments), else declare it durable.
    Throwaway channels, since a failed passive declare closes its channel."""
    probe = await connection.channel()
    try:
        await probe.declare_queue(name, passive=True)
        return
    except aiormq.exceptions.ChannelNotFoundEntity:
        pass
    finally:
        with contextlib.suppress(Exception):
            await probe.close()
    channel = await connection.channel()
    try:
        await channel.declare_queue(name, durable=True, arguments=arguments)
    finally:
        await channel.close()
