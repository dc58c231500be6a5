"""Cron expressions as the alarms feed takes them, parsed once for both the gateway (which
refuses a bad one when the feed is created) and the initializer (which fires on it). Pure.

Fields are minute, hour, day of month, month, day of week (0 or 7 is Sunday), with an optional
sixth in front for the second (as upstream's alarms feed, which uses node-cron); each is ``*``,
a number, a range ``a-b``, a step ``*/n``, ``a-b/n`` or ``a/n``, or a comma list of those;
months and weekdays also take three-letter names. As in Vixie cron, when both day fields are
restricted a day matching either one is due.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


class CronError(ValueError):
    """What is wrong with an expression, worded for the user."""


class _BadItem(ValueError):
    pass


def _number(text: str, low: int, names: list[str] | None) -> int:
    if names is not None and text.lower() in names:
        return names.index(text.lower()) + low
    if not (text.isascii() and text.isdigit()):
        raise _BadItem
    return int(text)


def _items(text: str, low: int, high: int, names: list[str] | None) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, has_step, step_text = part.partition("/")
        step = _number(step_text, 0, None) if has_step else 1
        if step < 1:
            raise _BadItem
        if span == "*":
            first, last = low, high
        elif "-" in span:
            a, b = span.split("-", 1)
            first, last = _number(a, low, names), _number(b, low, names)
        else:
            first = _number(span, low, names)
            last = high if has_step else first
        if not low <= first <= last <= high:
            raise _BadItem
        values.update(range(first, last + 1, step))
    return values


def _field(text: str, name: str, low: int, high: int,
           names: list[str] | None = None) -> frozenset[int]:
    try:
        return frozenset(_items(text, low, high, names))
    except _BadItem:
        named = " or names" if names else ""
        raise CronError(
            f"field {name} '{text}' is not valid: use *, numbers {low}-{high}{named}, ranges "
            "a-b, steps */n or a-b/n, and lists with ','") from None


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
            raise CronError(
                "must have 5 fields (minute hour day-of-month month day-of-week), or 6 with "
                f"the second first, not {len(fields)}: '{expression}'")
        second = fields.pop(0) if len(fields) == 6 else "0"
        minute, hour, day, month, weekday = fields
        weekdays = _field(weekday, "day-of-week", 0, 7, _DAYS)
        return cls(
            seconds=_field(second, "second", 0, 59), minutes=_field(minute, "minute", 0, 59),
            hours=_field(hour, "hour", 0, 23), days=_field(day, "day-of-month", 1, 31),
            months=_field(month, "month", 1, 12, _MONTHS),
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


