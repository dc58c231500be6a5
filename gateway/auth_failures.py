"""Rate limiting of failed authentications, per client address and per key uuid.

Only failures are counted, and only failures are refused: a correct key is always accepted
(from a cached entry without touching Redis at all), so a flood of bad guesses against a uuid
or from an address never locks its legitimate user out. Past the limit a wrong key gets 429
instead of 401, which tells well-behaved clients to back off. Counting is shared by every
gateway (Redis, one round trip per failure, in fixed calendar-minute windows); once a client
is known to be over the limit this gateway answers its further failures from memory until the
window ends.

The address is the TCP peer: behind a reverse proxy every client shares the proxy's address
(headers such as X-Forwarded-For are not trusted, as any client could set them).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

WINDOW_S = 60
_MEMO_LIMIT = 10_000

_COUNT_FAILURE = """
local by_address = redis.call('INCR', KEYS[1])
if by_address == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local by_uuid = redis.call('INCR', KEYS[2])
if by_uuid == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return {by_address, by_uuid}
"""


@dataclass(frozen=True)
class Refusal:
    """Over the limit: answer 429 with this ``count`` of ``allowed`` for ``retry_after_s``."""

    count: int
    allowed: int
    retry_after_s: int

    @property
    def message(self) -> str:
        return (f"Too many failed authentication attempts in the last minute "
                f"(count: {self.count}, allowed: {self.allowed}).")


def _uuid_label(uuid: str) -> str:
    # The uuid comes from the client: a long one must not become a long Redis key.
    return uuid if len(uuid) <= 64 else hashlib.sha256(uuid.encode()).hexdigest()


class AuthFailureLimiter:
    def __init__(self, client: aioredis.Redis, *, per_address: int, per_uuid: int) -> None:
        self._count = client.register_script(_COUNT_FAILURE)
        self.per_address = per_address
        self.per_uuid = per_uuid
        # ("address"|"uuid", value) -> (window it is blocked in, the count that blocked it)
        self._blocked: dict[tuple[str, str], tuple[int, int, int]] = {}

    def _memo(self, window: int, address: str, uuid: str) -> Refusal | None:
        for scope in (("address", address), ("uuid", uuid)):
            blocked = self._blocked.get(scope)
            if blocked is not None and blocked[0] == window:
                return Refusal(blocked[1], blocked[2], self._retry_after())
        return None

    @staticmethod
    def _retry_after() -> int:
        return WINDOW_S - int(time.time()) % WINDOW_S

    async def failed(self, address: str, uuid: str) -> Refusal | None:
        """Count one failed attempt; a Refusal when the address or the uuid is over its
        limit for the current minute."""
        window = int(time.time()) // WINDOW_S
        label = _uuid_label(uuid)
        known = self._memo(window, address, label)
        if known is not None:
            return known
        by_address, by_uuid = await self._count(
            keys=[f"ft:authfail:addr:{address}:{window}", f"ft:authfail:uuid:{label}:{window}"],
            args=[WINDOW_S * 2],
        )
        refusal = None
        if int(by_uuid) > self.per_uuid:
            refusal = Refusal(int(by_uuid), self.per_uuid, self._retry_after())
            self._block(("uuid", label), window, refusal)
        if int(by_address) > self.per_address:
            refusal = Refusal(int(by_address), self.per_address, self._retry_after())
            self._block(("address", address), window, refusal)
        return refusal

    def _block(self, scope: tuple[str, str], window: int, refusal: Refusal) -> None:
        if len(self._blocked) >= _MEMO_LIMIT:
            self._blocked = {s: b for s, b in self._blocked.items() if b[0] == window}
            if len(self._blocked) >= _MEMO_LIMIT:
                self._blocked.clear()
        self._blocked[scope] = (window, refusal.count, refusal.allowed)
