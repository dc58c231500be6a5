"""Group commit for messages nobody waits on: items added during one turn of the event loop
(and while the previous batch is being sent) go out together, so under load one message or
one Redis round trip carries dozens of them, and when idle a lone item waits for nothing but
the current turn to end."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(self, send: Callable[[list[T]], Awaitable[None]], what: str) -> None:
        self._send = send
        self._what = what
        self._pending: list[T] = []
        self._sender: asyncio.Task[None] | None = None

    def add(self, item: T) -> None:
        self._pending.append(item)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._run())

    async def flush(self) -> None:
        """Until everything added so far was sent (or failed to be)."""
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    async def _run(self) -> None:
        await asyncio.sleep(0)  # the rest of this turn's items join
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self._send(batch)
            except Exception as exc:  # advisory: the sender's callers do not wait for it
                log.warning("could not send %d %s: %s", len(batch), self._what, exc)
