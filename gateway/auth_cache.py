"""The gateway's in-process cache of verified keys, and what keeps it honest.

A valid key is remembered for a few seconds so the hot path (a cached successful auth) costs
no Redis call and no hash. A revoked key must not stay valid for long: every revocation (and
every new expiry) is published on ``ft:auth:revoked`` and each gateway drops that uuid at once
(``gateway.invalidations``). Pub/sub delivers at most once, so a gateway that lost its
subscription clears the whole cache when it subscribes again; and no entry outlives ``ttl_s``
(nor the key's own expiry) anyway, so the worst case, a gateway cut off from Redis pub/sub, is
bounded by that TTL.
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass

from bus.ids import now_ms
from bus.keys import StoredKey


@dataclass(frozen=True)
class Identity:
    """Who a request is from: the namespace and the uuid of the key it presented. The
    secret itself is not kept here (it would end up wherever requests are logged)."""

    namespace: str
    uuid: str


@dataclass(frozen=True)
class _Valid:
    until: float  # monotonic
    secret: str
    identity: Identity


class AuthCache:
    """Valid keys for ``ttl_s`` (or until their expiry), by uuid; rejected credentials for
    ``negative_ttl_s``, so a client retrying a bad key does not reach Redis each time, while a
    key created a moment ago soon works."""

    def __init__(
        self, *, ttl_s: float = 5.0, negative_ttl_s: float = 1.0, max_entries: int = 10_000
    ) -> None:
        self.ttl_s = ttl_s
        self._negative_ttl_s = negative_ttl_s
        self._max_entries = max_entries
        self._valid: dict[str, _Valid] = {}
        self._invalid: dict[tuple[str, str], float] = {}
        # Bumped by every revocation: a lookup that raced with one is answered but not kept.
        self.generation = 0

    def lookup(self, uuid: str, secret: str) -> Identity | bool | None:
        """The identity if cached valid, False if cached invalid, None if unknown."""
        now = time.monotonic()
        valid = self._valid.get(uuid)
        if valid is not None and valid.until > now and hmac.compare_digest(valid.secret, secret):
            return valid.identity
        rejected_until = self._invalid.get((uuid, secret))
        if rejected_until is not None and rejected_until > now:
            return False
        return None

    def remember(
        self, uuid: str, secret: str, stored: StoredKey | None, generation: int
    ) -> Identity | None:
        """Cache what Redis said about a credential; ``generation`` is ``self.generation`` as
        it was before Redis was asked."""
        now = time.monotonic()
        if len(self._valid) + len(self._invalid) >= self._max_entries:
            self._evict(now)
        if stored is None:
            self._invalid[(uuid, secret)] = now + self._negative_ttl_s
            return None
        ttl = self.ttl_s
        if stored.expires is not None:
            ttl = min(ttl, max(0.0, (stored.expires - now_ms()) / 1000))
        found = Identity(namespace=stored.namespace, uuid=uuid)
        if generation == self.generation:
            self._valid[uuid] = _Valid(now + ttl, secret, found)
        return found

    def forget(self, uuid: str) -> None:
        self.generation += 1
        self._valid.pop(uuid, None)

    def clear(self) -> None:
        self.generation += 1
        self._valid.clear()
        self._invalid.clear()

    def _evict(self, now: float) -> None:
        for uuid in [u for u, v in self._valid.items() if v.until <= now]:
            del self._valid[uuid]
        for cred in [c for c, until in self._invalid.items() if until <= now]:
            del self._invalid[cred]
        if len(self._valid) + len(self._invalid) >= self._max_entries:
            # All fresh: drop the rejected ones first, then the oldest half of the valid ones.
            self._invalid.clear()
            for uuid in list(self._valid)[: self._max_entries // 2]:
                del self._valid[uuid]
