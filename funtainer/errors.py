"""What the client raises: one type per way a call can fail, each carrying what OpenWhisk said.

``ApiError`` and its subclasses: the API answered with an error (``error``/``code`` are
OpenWhisk's ``{"error": ..., "code": <transaction id>}``, ``body`` the whole answer).
``ActivationFailed``: the action ran and did not succeed. ``ActivationTimeout``: it did not
finish in the time the caller gave. ``Unreachable``: no answer at all.
"""

from __future__ import annotations

import json
from typing import Any


class FuntainerError(Exception):
    """Every error of this client."""


class Unreachable(FuntainerError):
    """No HTTP answer: refused, unknown host, TLS failure or timeout."""


class ApiError(FuntainerError):
    def __init__(self, status: int, error: str, code: str | None = None, body: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.code = code
        self.body = body

    def __str__(self) -> str:
        return f"{self.error} (code {self.code})" if self.code else self.error


class BadRequest(ApiError):
    """400: the request was malformed or a value was invalid."""


class Unauthorized(ApiError):
    """401: the key is missing or wrong."""


class Forbidden(ApiError):
    """403: the key may not do this (another namespace's entity, a blocked namespace)."""


class NotFound(ApiError):
    """404: no such entity or activation."""


class Conflict(ApiError):
    """409: the name is taken (``overwrite`` was off, or another collection holds it)."""


class PayloadTooLarge(ApiError):
    """413: the request or the action's code is over the limit."""


class Throttled(ApiError):
    """429: over the namespace's invocations per minute or concurrent limit."""


class ServerError(ApiError):
    """5xx: the platform failed (or is unavailable) for this request."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    413: PayloadTooLarge, 429: Throttled,
}


def api_error(status: int, body: Any, text: str) -> ApiError:
    """The typed error for a non-2xx answer."""
    kind = _BY_STATUS.get(status, ServerError if status >= 500 else ApiError)
    if isinstance(body, dict) and "error" in body:
        error = body["error"]
        message = error if isinstance(error, str) else json.dumps(error)
        code = body.get("code")
        return kind(status, message, None if code is None else str(code), body)
    text = text.strip()
    detail = f": {text[:200]}" if text and not isinstance(body, dict | list) else ""
    return kind(status, f"the API answered HTTP {status}{detail}", None, body)


class ActivationFailed(FuntainerError):
    """The activation finished without success. ``status`` is OpenWhisk's ("application
    error", "action developer error", "whisk internal error"), ``result`` what the action (or
    the platform) answered, ``record`` the whole activation record."""

    def __init__(self, record: dict[str, Any]) -> None:
        response = record.get("response") or {}
        self.record = record
        self.activation_id: str = record.get("activationId", "")
        self.status: str = response.get("status", "")
        self.result: Any = response.get("result")
        error = self.result.get("error") if isinstance(self.result, dict) else None
        self.error: str = error if isinstance(error, str) else json.dumps(error or self.result)
        super().__init__(f"{self.status}: {self.error} (activation {self.activation_id})")


class ActivationTimeout(FuntainerError, TimeoutError):
    """The activation had not finished when the caller's timeout ran out; it goes on, and its
    handle can wait again."""

    def __init__(self, activation_id: str, waited_s: float) -> None:
        self.activation_id = activation_id
        super().__init__(f"activation {activation_id} did not finish within {waited_s:g} s")
