"""Group commit: items added during one turn of the event loop (and while the previous batch
is being sent) go out together, so under load one message or one round trip carries dozens
of them, and a lone item waits for nothing but the current turn to end.

``add`` is for messages nobody waits on (a failed batch is logged); ``submit`` waits until
its batch was sent and raises what sending it raised."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(
        self, send: Callable[[list[T]], Awaitable[None]], what: str, max_batch: int = 256
    ) -> None:
        self._send = send
        self._what = what
        self._max_batch = max_batch
        # Batches not sent yet, oldest first; the last one takes new items until it is full.
        self._batches: deque[tuple[list[T], asyncio.Future[None]]] = deque()
        self._sender: asyncio.Task[None] | None = None

    def add(self, item: T) -> None:
        self._enqueue(item)

    async def submit(self, item: T) -> None:
        # Shielded: a caller that gives up must not cancel the batch the others wait for.
        await asyncio.shield(self._enqueue(item))

    async def flush(self) -> None:
        """Until everything added so far was sent (or failed to be)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    def _enqueue(self, item: T) -> asyncio.Future[None]:
        if not self._batches or len(self._batches[-1][0]) >= self._max_batch:
            self._batches.append(([], asyncio.get_running_loop().create_future()))
        batch, sent = self._batches[-1]
        batch.append(item)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._run())
        return sent

    async def _run(self) -> None:
        try:
            await asyncio.sleep(0)  # the rest of this turn's items join
            while self._batches:
                batch, sent = self._batches.popleft()
                try:
                    await self._send(batch)
                except Exception as exc:
                    log.warning("could not send %d %s: %s", len(batch), self._what, exc)
                    sent.set_exception(exc)
                    sent.exception()  # retrieved: add()'s callers never look
                else:
                    sent.set_result(None)
        finally:
            while self._batches:  # cancelled (shutting down): nobody waits forever
                _, sent = self._batches.popleft()
                sent.cancel()
