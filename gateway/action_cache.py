"""The gateway's in-process cache of action documents, so that invoking a cached action reads
nothing from Redis before it is throttled and sent.

It stays honest three ways. Every entity write is announced on ``ENTITY_CHANGED_CHANNEL`` in
the same Redis step as the write, and each gateway drops that action (``gateway.invalidations``);
this gateway's own writes are seen as they succeed (``Store.watch_entities``), so its next
request never finds the old version. A lookup that raced with a change is answered but not
kept. And no entry outlives ``ttl_s``, which bounds staleness while the pub/sub feed is down
(the cache is cleared when it comes back). Missing actions are not remembered: one created a
moment ago on another gateway must be found.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bus.models import ActionDoc
from bus.store import Store

ACTIONS_PREFIX = "actions:"


@dataclass(frozen=True)
class _Cached:
    until: float  # monotonic
    doc: ActionDoc


class ActionCache:
    """Action documents by ``(namespace, name)``, each for at most ``ttl_s``. The documents
    handed out are shared: callers read them and never change them."""

    def __init__(self, store: Store, *, ttl_s: float = 5.0, max_entries: int = 10_000) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._docs: dict[str, _Cached] = {}
        # Bumped by every change: a read that raced with one is not kept.
        self._generation = 0

    async def get(self, ns: str, name: str) -> ActionDoc | None:
        entity = f"{ACTIONS_PREFIX}{ns}:{name}"
        now = time.monotonic()
        cached = self._docs.get(entity)
        if cached is not None and cached.until > now:
            return cached.doc
        generation = self._generation
        doc = await self._store.get_action(ns, name)
        if doc is not None and self._ttl_s > 0 and generation == self._generation:
            if len(self._docs) >= self._max_entries:
                self._evict(now)
            self._docs[entity] = _Cached(now + self._ttl_s, doc)
        return doc

    def forget(self, entity: str) -> None:
        """``entity`` changed: ``"<collection>:<ns>:<name>"``, as announced."""
        if entity.startswith(ACTIONS_PREFIX):
            self._generation += 1
            self._docs.pop(entity, None)

    def clear(self) -> None:
        self._generation += 1
        self._docs.clear()

    def _evict(self, now: float) -> None:
        for entity in [e for e, c in self._docs.items() if c.until <= now]:
            del self._docs[entity]
        if len(self._docs) >= self._max_entries:  # all fresh: the oldest half goes
            for entity in list(self._docs)[: self._max_entries // 2]:
                del self._docs[entity]
