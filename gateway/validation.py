"""Request validation shared by every collection: names, list windows, query flags, value
sizes (bodies are read by ``gateway.bodies``). Messages are OpenWhisk's
(``ctl/RestAPIs.scala``, ``ent/EntityPath.scala``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.errors import ApiError

MB = 1024 * 1024


@dataclass(frozen=True)
class GatewayLimits:
    """Size and list limits (OpenWhisk's defaults); tests may lower them."""

    code_bytes: int = 48 * MB  # exec-size-limit
    parameters_bytes: int = 1 * MB  # parameter-size-limit, parameters and annotations each
    payload_bytes: int = 1 * MB  # activation.payload.max, the invoke body
    request_bytes: int = 50 * MB  # the HTTP server's hard limit on any body
    list_max: int = 200
    list_default: int = 30


# Java's \w is ASCII-only; Python's is not unless told.
_ENTITY_NAME = re.compile(r"\A([\w]|[\w][\w@ .&-]{0,254}[\w@.&-])\Z", re.ASCII)
_NAME_MAX = 256


def check_entity_name(name: str) -> str:
    if len(name) > _NAME_MAX:
        raise ApiError(400, f"Name segement longer than allowed: {len(name)} > {_NAME_MAX}.")
    if not _ENTITY_NAME.match(name):
        raise ApiError(400, "The name of the entity contains illegal characters.")
    return name


def is_entity_name(name: str) -> bool:
    return len(name) <= _NAME_MAX and bool(_ENTITY_NAME.match(name))


# -- query parameters -----------------------------------------------------------------------

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def bool_param(request: web.Request, name: str, default: bool = False) -> bool:
    """Pekko's Boolean unmarshalling of a query parameter."""
    raw = request.query.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ApiError(
        400, f"The query parameter '{name}' was malformed:\n'{raw}' is not a valid Boolean value"
    )


# Java's Integer/Long parsing, as OpenWhisk's list windows and epoch times use it: an optional
# sign and digits, nothing else (Python's int() would also take spaces, "_" and non-ASCII
# digits), within 32 or 64 bits.
_JAVA_INTEGER = re.compile(r"[+-]?[0-9]+")
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def java_int(raw: str, bounds: tuple[int, int]) -> int | None:
    """``raw`` as Java would parse it into an int (``INT32``) or a long (``INT64``); None if
    it would not."""
    if not _JAVA_INTEGER.fullmatch(raw) or len(raw) > 20:
        return None
    value = int(raw)
    return value if bounds[0] <= value <= bounds[1] else None


def _int_param(request: web.Request, name: str, collection: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    value = java_int(raw, INT32)
    if value is None:
        raise ApiError(400, f"The value '{raw}' is not an integer for {collection}.")
    return value


@dataclass(frozen=True)
class ListWindow:
    limit: int
    skip: int
    count: bool


def list_window(request: web.Request, collection: str, limits: GatewayLimits) -> ListWindow:
    """``limit`` (0 means the maximum), ``skip`` and ``count`` of a list request."""
    limit = _int_param(request, "limit", collection)
    if limit is None:
        limit = limits.list_default
    elif not 0 <= limit <= limits.list_max:
        raise ApiError(
            400, f"The value '{limit}' is not in the range of 0 to {limits.list_max} for "
            f"{collection}."
        )
    elif limit == 0:
        limit = limits.list_max
    skip = _int_param(request, "skip", collection) or 0
    if skip < 0:
        raise ApiError(
            400, f"The value '{skip}' is not greater than or equal to 0 for {collection}."
        )
    return ListWindow(limit=limit, skip=skip, count=bool_param(request, "count"))


# -- values ---------------------------------------------------------------------------------


def header_text(value: str) -> str:
    """A header value fit to forward (msgpack, JSON): aiohttp keeps bytes that are not UTF-8
    as lone surrogates, which no encoder takes; they become U+FFFD."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def request_headers(request: web.Request, *, drop: frozenset[str] = frozenset()) -> dict[str, str]:
    """The request's headers by lower-cased name (the first of repeated ones), for actions."""
    out: dict[str, str] = {}
    for name, value in request.headers.items():
        key = header_text(name.lower())
        if key not in drop:
            out.setdefault(key, header_text(value))
    return out


def json_size(value: Any) -> int:
    """Bytes of the compact JSON text of ``value`` (how OpenWhisk sizes values)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
