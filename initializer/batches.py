"""Queue-feed batches as data: what an action sees of each message, and which messages a
batch's activations failed (Lambda's rules, including its partial batch response).

Pure functions over messages and records, so the runner only moves things around.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aio_pika.abc import AbstractIncomingMessage

from bus.models import ActivationRecord
from initializer.fanout import RuleActivation

ATTEMPT_HEADER = "x-ft-attempt"
MESSAGE_ID_HEADER = "x-ft-message-id"  # a generated id, carried across retries
DEAD_LETTER_HEADERS = ("x-ft-attempts", "x-ft-error", "x-ft-trigger", "x-ft-activation-id")
_BROKER_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                   "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                   "x-last-death-reason")


def json_safe(value: Any) -> Any:
    """AMQP header values as JSON: tables and arrays recurse, bytes become text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def decode_body(body: bytes) -> tuple[Any, bool]:
    """(value, is_base64): JSON if it parses, else UTF-8 text, else base64."""
    try:
        return json.loads(body), False
    except ValueError:
        pass
    try:
        return body.decode(), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), True


@dataclass
class FeedItem:
    message: AbstractIncomingMessage
    message_id: str
    attempt: int

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> FeedItem:
        headers = message.headers or {}
        carried = headers.get(MESSAGE_ID_HEADER)
        if isinstance(carried, bytes):
            carried = carried.decode()
        message_id = message.message_id or carried or uuid.uuid4().hex
        attempt = headers.get(ATTEMPT_HEADER)
        return cls(message, str(message_id), attempt if isinstance(attempt, int) else 1)

    def user_headers(self) -> dict[str, Any]:
        """The producer's headers, without ours and the broker's dead-letter history."""
        return {k: v for k, v in (self.message.headers or {}).items()
                if not k.startswith("x-ft-") and k not in _BROKER_HEADERS}

    def entry(self) -> dict[str, Any]:
        body, is_base64 = decode_body(self.message.body)
        out = {"messageId": self.message_id, "body": body,
               "headers": json_safe(self.user_headers()), "attempt": self.attempt}
        if is_base64:
            out["bodyEncoding"] = "base64"
        return out


@dataclass
class Failure:
    error: Any  # JSON: the failed activation's result, or why there was none
    activation_id: str | None


def whole_batch(message_ids: list[str], failure: Failure) -> dict[str, Failure]:
    return dict.fromkeys(message_ids, failure)


def _item_failures(result: Any) -> list[str] | None:
    """The ids a ``batchItemFailures`` result names; None if it is malformed (then Lambda
    fails the whole batch)."""
    entries = result.get("batchItemFailures") if isinstance(result, dict) else None
    if entries is None:
        return []
    if not isinstance(entries, list):
        return None
    ids = []
    for entry in entries:
        item = entry.get("itemIdentifier") if isinstance(entry, dict) else None
        if not isinstance(item, str) or not item:
            return None
        ids.append(item)
    return ids


def batch_failures(
    message_ids: list[str], rules: list[RuleActivation],
    records: list[ActivationRecord | None], waited_s: list[float],
) -> dict[str, Failure]:
    """Failed message id -> why. Every rule's activation must succeed; one that reports
    ``batchItemFailures`` fails only the items it names."""
    failed: dict[str, Failure] = {}
    for rule, record, wait in zip(rules, records, waited_s, strict=True):
        if rule.error is not None:
            return whole_batch(message_ids, Failure(
                {"error": rule.error, "rule": rule.rule, "action": rule.action}, None))
        if record is None:
            return whole_batch(message_ids, Failure(
                {"error": f"no activation record within {wait:.0f} s"}, rule.activation_id))
        result = record.response.result
        if not record.response.success:
            error = result if result is not None else {"error": record.response.status_code
                                                       .message}
            return whole_batch(message_ids, Failure(error, rule.activation_id))
        named = _item_failures(result)
        if named is None:
            return whole_batch(message_ids, Failure(
                {"error": "malformed batchItemFailures", "result": result}, rule.activation_id))
        known = set(message_ids)
        for item in named:
            if item in known:
                failed.setdefault(item, Failure(result, rule.activation_id))
    return failed


def retry_delay_ms(attempt: int, base_ms: int, max_ms: int) -> int:
    """Exponential backoff after failed attempt ``attempt`` (1 -> base, 2 -> 2*base...)."""
    return int(min(max_ms, base_ms * 2 ** (attempt - 1)))
