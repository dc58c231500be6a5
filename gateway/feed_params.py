"""The built-in feeds' parameters, checked and turned into a ``bus.events.FeedDoc``. Pure.

A mistake here is the feed action's application error (``{"error": message}``), so messages
name the parameter and what it accepts."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from bus.cron import Cron, CronError
from bus.events import FeedDoc, FeedKind

# (package, action) under /whisk.system -> the feed it manages.
FEED_ACTIONS: dict[tuple[str, str], FeedKind] = {
    ("rabbitmq", "queue"): "queue",
    ("alarms", "alarm"): "alarm",
    ("alarms", "interval"): "interval",
    ("alarms", "once"): "once",
}

_QUEUE_NAME_MAX = 255  # bytes, AMQP's short string



def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


class FeedError(ValueError):
    """Bad feed parameters or lifecycle request; the message is the user's answer."""


def build_feed(
    kind: FeedKind, ns: str, trigger: str, params: dict[str, Any], created: int
) -> FeedDoc:
    """The feed document for ``params`` (the feed's own parameters, as given)."""
    fields = _once_fields(params, created) if kind == "once" else _BUILDERS[kind](params)
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


def _once_fields(params: dict[str, Any], created: int) -> dict[str, Any]:
    date = _date(params.get("date"), "date")
    if date is None:
        raise FeedError("'date' is required: when to fire, as epoch milliseconds or an ISO 8601 "
                        "date")
    if date <= created:
        raise FeedError("'date' must be in the future")
    delete = params.get("deleteAfterFire", "false")
    choice = str(delete).lower() if isinstance(delete, str | bool) else None
    if choice not in ("false", "rules", "true"):
        raise FeedError("'deleteAfterFire' must be false, rules or true")
    return {"date": date, "delete_after_fire": choice,
            "trigger_payload": _payload(params.get("trigger_payload"))}


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
    """The schedule, normalized, if ``bus.cron`` can parse it (5 fields, or 6 whose first is
    the second, as upstream's alarms feed takes them)."""
    if not isinstance(value, str):
        raise FeedError("'cron' must be a string")
    try:
        Cron.parse(value)
    except CronError as exc:
        raise FeedError(f"'cron' {exc}") from None
    return " ".join(value.split())
_BUILDERS = {"queue": _queue_fields, "alarm": _alarm_fields, "interval": _interval_fields}
