"""The built-in feeds' parameters, checked and turned into a ``bus.events.FeedDoc``. Pure.

A mistake here is the feed action's application error (``{"error": message}``), so messages
name the parameter and what it accepts."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from bus.events import FeedDoc, FeedKind

# (package, action) under /whisk.system -> the feed it manages.
FEED_ACTIONS: dict[tuple[str, str], FeedKind] = {
    ("rabbitmq", "queue"): "queue",
    ("alarms", "alarm"): "alarm",
    ("alarms", "interval"): "interval",
}

_QUEUE_NAME_MAX = 255  # bytes, AMQP's short string

# 5-field cron: (name, lowest, highest); day-of-week 0 and 7 are both Sunday.
_SECOND = ("second", 0, 59)
_CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


class FeedError(ValueError):
    """Bad feed parameters or lifecycle request; the message is the user's answer."""


def build_feed(
    kind: FeedKind, ns: str, trigger: str, params: dict[str, Any], created: int
) -> FeedDoc:
    """The feed document for ``params`` (the feed's own parameters, as given)."""
    fields = _BUILDERS[kind](params)
    return FeedDoc(
        namespace=ns, trigger=trigger, kind=kind, params=params, created=created, **fields
    )


# -- queue ----------------------------------------------------------------------------------


def _queue_fields(params: dict[str, Any]) -> dict[str, Any]:
    queue = params.get("queue")
    if queue is None:
        raise FeedError("'queue' is required: the name of the RabbitMQ queue to consume")
    queue = _queue_name(queue, "queue")
    dead_letter = params.get("deadLetterQueue")
    if dead_letter is not None:
        dead_letter = _queue_name(dead_letter, "deadLetterQueue")
        if dead_letter == queue:
            raise FeedError("'deadLetterQueue' must not be the consumed 'queue'")
    return {
        "queue": queue,
        "batch_size": _whole(params, "batchSize", 1, 1000, default=1),
        "max_batching_window_ms": _whole(params, "maxBatchingWindowMs", 0, 300_000, default=0),
        "max_concurrency": _whole(params, "maxConcurrency", 1, 100, default=1),
        "max_retries": _whole(params, "maxRetries", 0, 100, default=3),
        "dead_letter_queue": dead_letter,
    }


def _queue_name(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value.encode()) > _QUEUE_NAME_MAX:
        raise FeedError(f"'{name}' must be a queue name of 1 to {_QUEUE_NAME_MAX} bytes")
    return value


def _whole(params: dict[str, Any], name: str, low: int, high: int, *, default: int) -> int:
    value = params.get(name)
    if value is None:
        return default
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or value != int(value):
        raise FeedError(f"'{name}' must be a whole number from {low} to {high}")
    if not low <= int(value) <= high:
        raise FeedError(f"'{name}' must be a whole number from {low} to {high}, not {value}")
    return int(value)


# -- alarm and interval ---------------------------------------------------------------------


def _alarm_fields(params: dict[str, Any]) -> dict[str, Any]:
    cron = params.get("cron")
    if cron is None:
        raise FeedError("'cron' is required: a cron schedule such as '*/5 * * * *' (5 fields, "
                        "or 6 with the second first)")
    return {"cron": check_cron(cron), **_schedule_fields(params)}


def _interval_fields(params: dict[str, Any]) -> dict[str, Any]:
    minutes = params.get("minutes")
    is_number = isinstance(minutes, int | float) and not isinstance(minutes, bool)
    if not is_number or not math.isfinite(minutes) or minutes <= 0:
        raise FeedError("'minutes' is required: a number of minutes greater than 0")
    return {"minutes": float(minutes), **_schedule_fields(params)}


def _schedule_fields(params: dict[str, Any]) -> dict[str, Any]:
    start = _date(params.get("startDate"), "startDate")
    stop = _date(params.get("stopDate"), "stopDate")
    if start is not None and stop is not None and stop <= start:
        raise FeedError("'stopDate' must be after 'startDate'")
    return {
        "trigger_payload": _payload(params.get("trigger_payload")),
        "start_date": start,
        "stop_date": stop,
    }


def _payload(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {"payload": value}  # the alarms package's rule for a plain-text payload
    if not isinstance(value, dict):
        raise FeedError("'trigger_payload' must be a JSON object")
    return value


def _date(value: Any, name: str) -> int | None:
    """Epoch milliseconds, or an ISO 8601 date (UTC unless it says otherwise)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if _digits(text):
            return int(text)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return int(moment.timestamp() * 1000)
    raise FeedError(f"'{name}' must be epoch milliseconds or an ISO 8601 date, not {value!r}")


def check_cron(value: Any) -> str:
    """A 5-field schedule, or a 6-field one whose first field is the second (upstream's alarms
    feed takes both): each field ``*``, ``n``, ``a-b``, ``*/n`` or ``a-b/n``, or a
    comma-separated list of those, within the field's range."""
    if not isinstance(value, str):
        raise FeedError("'cron' must be a string")
    fields = value.split()
    if len(fields) not in (len(_CRON_FIELDS), len(_CRON_FIELDS) + 1):
        raise FeedError(
            f"'cron' must have 5 fields (minute hour day-of-month month day-of-week), or 6 "
            f"with the second first, not {len(fields)}: '{value}'"
        )
    named = _CRON_FIELDS if len(fields) == len(_CRON_FIELDS) else (_SECOND, *_CRON_FIELDS)
    for text, (name, low, high) in zip(fields, named, strict=True):
        for item in text.split(","):
            if not _cron_item_ok(item, low, high):
                raise FeedError(
                    f"'cron' field {name} '{text}' is not valid: use *, numbers {low}-{high}, "
                    f"ranges a-b, steps */n or a-b/n, and lists with ','"
                )
    return " ".join(fields)


def _cron_item_ok(item: str, low: int, high: int) -> bool:
    base, has_step, step = item.partition("/")
    if has_step and not (_digits(step) and int(step) >= 1):
        return False
    if base == "*":
        return True
    start, is_range, end = base.partition("-")
    if not _digits(start) or (is_range and not _digits(end)):
        return False
    first, last = int(start), int(end) if is_range else int(start)
    # A step needs a range to step through: "5/15" is not in the accepted syntax.
    if has_step and not is_range:
        return False
    return low <= first <= last <= high


_BUILDERS = {"queue": _queue_fields, "alarm": _alarm_fields, "interval": _interval_fields}
