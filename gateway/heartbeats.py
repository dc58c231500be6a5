"""The gateway's one consumer of ``ft.health``: every invoker's latest heartbeat (what the
dashboard shows of each pool), handed to whoever listens as it arrives (the direct path's
routing). Heartbeats are advisory, the next one says it all again: taken without acks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from bus.broker import HEALTH, Broker
from bus.codec import unpack
from bus.ids import now_ms
from bus.models import Heartbeat

log = logging.getLogger(__name__)

Listener = Callable[[Heartbeat], None]


class InvokerBeats:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._latest: dict[str, Heartbeat] = {}
        self._listeners: list[Listener] = []
        self._queue: AbstractQueue | None = None

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def recent(self, within_ms: int) -> dict[str, Heartbeat]:
        """The latest beat of each invoker heard from within ``within_ms``; older ones are
        forgotten (an invoker gone for good)."""
        oldest = now_ms() - within_ms
        for invoker_id in [i for i, b in self._latest.items() if b.at < oldest]:
            del self._latest[invoker_id]
        return dict(self._latest)

    async def start(self) -> None:
        self._queue = await self.broker.consume(None, self._on_beat, prefetch=256,
                                                bind_to=HEALTH, auto_ack=True)

    async def close(self) -> None:
        if self._queue is not None:
            with contextlib.suppress(Exception):
                await self.broker.stop_consuming(self._queue)

    async def _on_beat(self, message: AbstractIncomingMessage) -> None:
        try:
            beat = unpack(message.body, Heartbeat)
        except Exception:
            log.exception("undecodable heartbeat dropped")
            return
        self._latest[beat.invoker_id] = beat
        for listener in self._listeners:
            listener(beat)
