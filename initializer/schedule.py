"""When alarm feeds are due: cron expressions (UTC, ``bus.cron``) and fixed intervals, as pure
functions of epoch milliseconds so they test without clocks."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from functools import lru_cache

from bus.cron import Cron
from bus.events import FeedDoc

MINUTE_MS = 60_000
MIN_INTERVAL_MS = 1000  # alarms are looked at once a second
MAX_CATCH_UP_MS = 10 * MINUTE_MS  # after a long stall, do not replay hours of missed ticks

def cron_ticks(cron: Cron, after_ms: int, upto_ms: int) -> Iterator[int]:
    """The seconds in (after_ms, upto_ms] the expression matches: for each matching minute,
    its matching seconds (just its start for a 5-field expression)."""
    seconds = sorted(cron.seconds)
    minute = after_ms // MINUTE_MS * MINUTE_MS
    while minute <= upto_ms:
        if cron.matches(dt.datetime.fromtimestamp(minute / 1000, dt.UTC)):
            for second in seconds:
                if after_ms < (tick := minute + second * 1000) <= upto_ms:
                    yield tick
        minute += MINUTE_MS


def interval_ticks(
    origin_ms: int, period_ms: int, after_ms: int, upto_ms: int, *, first: int = 1
) -> Iterator[int]:
    """origin + k * period (k >= first) in (after_ms, upto_ms]."""
    if period_ms <= 0:
        return
    k = max(first, math.floor((after_ms - origin_ms) / period_ms) + 1)
    while (tick := origin_ms + k * period_ms) <= upto_ms:
        if tick > after_ms:
            yield tick
        k += 1


@lru_cache(maxsize=512)
def _parse_cached(expression: str) -> Cron:
    return Cron.parse(expression)


def due_ticks(doc: FeedDoc, after_ms: int, upto_ms: int) -> list[int]:
    """The feed's ticks in (after_ms, upto_ms], within its start and stop dates."""
    after_ms = max(after_ms, upto_ms - MAX_CATCH_UP_MS)
    if doc.kind == "once" and doc.date is not None:
        return [doc.date] if after_ms < doc.date <= upto_ms else []
    if doc.kind == "alarm" and doc.cron:
        ticks = list(cron_ticks(_parse_cached(doc.cron), after_ms, upto_ms))
    elif doc.kind == "interval" and doc.minutes:
        # OpenWhisk's alarms package: the first fire is at startDate when there is one,
        # otherwise one interval after the feed was created.
        period = max(MIN_INTERVAL_MS, round(doc.minutes * MINUTE_MS))
        if doc.start_date is not None:
            ticks = list(interval_ticks(doc.start_date, period, after_ms, upto_ms, first=0))
        else:
            ticks = list(interval_ticks(doc.created, period, after_ms, upto_ms))
    else:
        return []
    return [t for t in ticks
            if (doc.start_date is None or t >= doc.start_date)
            and (doc.stop_date is None or t <= doc.stop_date)]
