"""One Redis pub/sub subscription per gateway for everything its caches must forget: revoked
keys (``ft:auth:revoked``) and changed entities (``ft:ent:changed``).

Pub/sub delivers at most once: whatever was announced while the subscription was down is
lost, so every cache is cleared each time the subscription is (re)made. The caches' own TTLs
bound how stale an entry can get while it is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

import redis.asyncio as aioredis

log = logging.getLogger(__name__)


class InvalidationListener:
    """Calls ``forget[channel](message)`` for each message on those channels, and every
    ``clear`` whenever the subscription starts afresh."""

    def __init__(
        self, client: aioredis.Redis, forget: Mapping[str, Callable[[str], None]],
        clear: list[Callable[[], None]], *, retry_s: float = 1.0,
    ) -> None:
        self._client = client
        self._forget = dict(forget)
        self._clear = clear
        self._retry_s = retry_s
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    async def start(self, timeout_s: float = 10.0) -> None:
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self.subscribed.wait(), timeout_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        while True:
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(*self._forget)
                for clear in self._clear:
                    clear()
                self.subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                log.warning("cache invalidation feed lost (%s); retrying in %.0f s",
                            exc, self._retry_s)
                await asyncio.sleep(self._retry_s)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        forget = self._forget.get(name)
        if forget is not None:
            forget(data.decode() if isinstance(data, bytes) else data)
