"""OpenWhisk's per-namespace throttles (``Entitlement.checkThrottles``) with its exact 429
texts, for everything that starts activations: the gateway (invokes, web actions, fires) and
the initializer (the actions rules start).

Invocations per minute and fires per minute count in a fixed calendar-minute window; the
concurrency throttle counts the namespace's accepted activations that have no record yet (the
record write takes them out; a deadline ages out any whose record never comes). One Redis round
trip per check: the namespace's own limits are read by the same script.
"""

from __future__ import annotations

import asyncio
import logging

from bus.config import Settings
from bus.ids import now_ms
from bus.models import ActionDoc
from bus.store import Store

log = logging.getLogger(__name__)

RATE_EXCEEDED = 1
CONCURRENCY_EXCEEDED = 2

# OpenWhisk's completion-ack timeout: max(timeout, 60 s) * 2 + 1 min. An activation older than
# that is presumed lost and no longer holds a concurrency slot.
_ACK_FACTOR = 2
_ACK_ADDON_MS = 60_000
_MIN_ACK_BASE_MS = 60_000


# How often a producer waiting for a concurrency slot asks again: slots free as records are
# written, which nothing announces. Rate refusals wait for the next minute instead.
CONCURRENCY_RECHECK_MS = 250
MINUTE_MS = 60_000


class Throttled(Exception):
    """Over a throttle; ``str()`` is OpenWhisk's message (answered with a 429).
    ``retry_after_ms``: when asking again may be admitted. ``limit``: "timed" (per minute) or
    "concurrent", OpenWhisk's names for its two rate limits."""

    def __init__(self, message: str, *, retry_after_ms: int, limit: str) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms
        self.limit = limit


def too_many_requests(count: int, allowed: int, now: int) -> Throttled:
    return Throttled(f"Too many requests in the last minute (count: {count}, allowed: {allowed}).",
                     retry_after_ms=MINUTE_MS - now % MINUTE_MS, limit="timed")


def too_many_concurrent(count: int, allowed: int) -> Throttled:
    return Throttled(
        f"Too many concurrent requests in flight (count: {count}, allowed: {allowed}).",
        retry_after_ms=CONCURRENCY_RECHECK_MS, limit="concurrent")


def in_flight_deadline(doc: ActionDoc, now: int) -> int:
    """When ``doc``'s activation stops counting as in flight if no record came. A sequence
    runs its components one after another, so it gets the sum of their waits (bounded by the
    sequence length); the component limits are unknown here, so each counts as the default."""
    base = max(doc.limits.timeout, _MIN_ACK_BASE_MS)
    steps = len(doc.exec.components or []) or 1
    return now + steps * (base * _ACK_FACTOR + _ACK_ADDON_MS)


async def admit_invocation(
    store: Store, settings: Settings, namespace: str, doc: ActionDoc, activation_id: str
) -> None:
    """Count one invocation of ``namespace`` and hold a concurrency slot for
    ``activation_id``, or raise ``Throttled``."""
    now = now_ms()
    verdict, count, allowed = await store.throttle_invoke(
        namespace, activation_id, now=now, deadline=in_flight_deadline(doc, now),
        per_minute=settings.invocations_per_minute, concurrent=settings.concurrent_invocations,
    )
    if verdict == RATE_EXCEEDED:
        raise too_many_requests(count, allowed, now)
    if verdict == CONCURRENCY_EXCEEDED:
        raise too_many_concurrent(count, allowed)


async def admit_fire(store: Store, settings: Settings, namespace: str) -> None:
    """Count one trigger fire of ``namespace`` (fires count against ``firesPerMinute`` only:
    the actions its rules start are counted as invocations when the initializer starts them)."""
    now = now_ms()
    verdict, count, allowed = await store.throttle_fire(
        namespace, now=now, per_minute=settings.fires_per_minute)
    if verdict == RATE_EXCEEDED:
        raise too_many_requests(count, allowed, now)


async def admit_when_allowed(
    store: Store, settings: Settings, namespace: str, doc: ActionDoc, activation_id: str,
    *, deadline: int | None = None,
) -> None:
    """``admit_invocation`` for producers that can wait (queue feeds, rules fired through the
    exchange, alarms): a throttle is back-pressure, not a failure. Waits until the window or
    a free slot admits the invocation; raises the last ``Throttled`` only if that would be
    after ``deadline`` (ms; None: wait as long as it takes)."""
    while True:
        try:
            await admit_invocation(store, settings, namespace, doc, activation_id)
            return
        except Throttled as exc:
            # A little past the minute's edge, so the clocks of gateway and Redis agree.
            wait_ms = exc.retry_after_ms + (50 if exc.retry_after_ms > CONCURRENCY_RECHECK_MS
                                            else 0)
            if deadline is not None and now_ms() + wait_ms > deadline:
                raise
            log.debug("%s waits %d ms for its throttle: %s", activation_id, wait_ms, exc)
            await asyncio.sleep(wait_ms / 1000)
