"""When alarm feeds are due: cron expressions (UTC) and fixed intervals, as pure functions of
epoch milliseconds so they test without clocks.

Cron fields are minute, hour, day of month, month, day of week (0 or 7 is Sunday), with an
optional sixth in front for the second (as upstream's alarms feed, which uses node-cron); each is
``*``, a number, a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n``, or a comma list of
those; months and weekdays also take three-letter names. As in Vixie cron, when both day
fields are restricted a day matching either one is due.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from bus.events import FeedDoc

MINUTE_MS = 60_000
MIN_INTERVAL_MS = 1000  # alarms are looked at once a second
MAX_CATCH_UP_MS = 10 * MINUTE_MS  # after a long stall, do not replay hours of missed ticks

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


class CronError(ValueError):
    pass


def _number(text: str, low: int, names: list[str] | None) -> int:
    if names is not None and text.lower() in names:
        return names.index(text.lower()) + low
    if not text.isdigit():
        raise CronError(f"not a number: {text!r}")
    return int(text)


def _field(text: str, low: int, high: int, names: list[str] | None = None) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = _number(step_text, 0, None) if step_text else 1
        if step < 1:
            raise CronError(f"bad step in {part!r}")
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, b = span.split("-", 1)
            first, last = _number(a, low, names), _number(b, low, names)
        else:
            first = _number(span, low, names)
            last = high if step_text else first
        if not low <= first <= last <= high:
            raise CronError(f"{part!r} is outside {low}-{high}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    seconds: frozenset[int]  # {0} for a 5-field expression
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        fields = expression.split()
        if len(fields) not in (5, 6):
            raise CronError(f"a cron expression has 5 or 6 fields, not {len(fields)}")
        second = fields.pop(0) if len(fields) == 6 else "0"
        minute, hour, day, month, weekday = fields
        weekdays = _field(weekday, 0, 7, _DAYS)
        return cls(
            seconds=_field(second, 0, 59), minutes=_field(minute, 0, 59),
            hours=_field(hour, 0, 23), days=_field(day, 1, 31),
            months=_field(month, 1, 12, _MONTHS),
            weekdays=frozenset(d % 7 for d in weekdays),
            days_restricted=not day.startswith("*"),
            weekdays_restricted=not weekday.startswith("*"),
        )

    def matches(self, when: dt.datetime) -> bool:
        if when.minute not in self.minutes or when.hour not in self.hours:
            return False
        if when.month not in self.months:
            return False
        day_ok = when.day in self.days
        weekday_ok = (when.weekday() + 1) % 7 in self.weekdays  # Python's Monday is 0
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok


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
