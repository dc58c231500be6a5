"""A connection to a RabbitMQ cluster: ``FT_AMQP_URL`` names one node, or several separated by
commas (this host's own node first). aio-pika's robust connection restores channels, queues
and consumers after a loss, but always to the one URL it was given: with that node dead, it
would retry a dead address forever. ``NodeFailover`` points it at the next node whenever it
loses its own, and again every ``NEXT_NODE_AFTER_S`` while no node has answered, so the
process follows the cluster instead of waiting for one machine.

Every durable queue is a quorum queue on a cluster (bus/broker.py), reachable through any
node, so consumers restored on another node go on where they were; what was delivered and not
acked comes again, which idempotent records make harmless."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

log = logging.getLogger(__name__)

# Reconnect every second (aio-pika's default is 5): the whole platform waits while away.
RECONNECT_INTERVAL_S = 1.0
# How long attempts at one node may fail before the next is tried (a partitioned node does not
# refuse: its attempts time out).
NEXT_NODE_AFTER_S = 3.0


def node_urls(url: str) -> list[str]:
    """The node URLs ``FT_AMQP_URL`` names, in order."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls:
        raise ValueError("FT_AMQP_URL names no RabbitMQ node")
    return urls


async def connect_to_cluster(url: str, *, name: str) -> AbstractRobustConnection:
    """A robust connection to the first node of ``url`` that answers, following the others
    from then on."""
    urls = node_urls(url)
    failure: BaseException | None = None
    for index, node in enumerate(urls):
        try:
            connection = await aio_pika.connect_robust(
                node, client_properties={"connection_name": name},
                reconnect_interval=RECONNECT_INTERVAL_S)
        except CONNECTION_EXCEPTIONS as exc:
            log.warning("RabbitMQ node %s did not answer: %s", URL(node).host, exc)
            failure = exc
            continue
        if len(urls) > 1:
            NodeFailover(connection, urls, index)
        return connection
    assert failure is not None
    raise failure


class NodeFailover:
    def __init__(self, connection: AbstractRobustConnection, urls: list[str], current: int) -> None:
        self.connection = connection
        self.urls = [URL(u) for u in urls]
        self.current = current
        self._moving: asyncio.Task[None] | None = None
        connection.close_callbacks.add(self._lost)

    def _lost(self, _sender: Any, _exc: BaseException | None = None) -> None:
        if self.connection.close_called:  # closed by us: nothing to follow
            if self._moving is not None:
                self._moving.cancel()
            return
        if self._moving is None or self._moving.done():
            self._moving = asyncio.ensure_future(self._move_until_connected())

    async def _move_until_connected(self) -> None:
        while not self.connection.close_called:
            self.current = (self.current + 1) % len(self.urls)
            # Read by aio-pika's next attempt (its Connection.connect takes ``self.url``).
            self.connection.url = self.urls[self.current]  # type: ignore[attr-defined]
            log.warning("RabbitMQ connection lost; next attempts go to %s",
                        self.urls[self.current].host)
            try:
                await asyncio.wait_for(self.connection.connected.wait(), NEXT_NODE_AFTER_S)
                return
            except TimeoutError:
                continue
