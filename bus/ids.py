"""Identifiers in OpenWhisk's formats."""

from __future__ import annotations

import re
import time
import uuid

_ACTIVATION_ID = re.compile(r"^[0-9a-f]{32}$")


def new_activation_id() -> str:
    """32 lowercase hex chars, a UUIDv4 without dashes (OpenWhisk's ActivationId)."""
    return uuid.uuid4().hex


def new_transaction_id() -> str:
    return uuid.uuid4().hex


def is_activation_id(value: str) -> bool:
    return bool(_ACTIVATION_ID.match(value))


def now_ms() -> int:
    return time.time_ns() // 1_000_000
