"""Request validation shared by every collection: names, list windows, query flags, bodies
and their sizes. Messages are OpenWhisk's (``ctl/RestAPIs.scala``, ``ent/EntityPath.scala``)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.errors import ApiError, malformed, too_large

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


def _int_param(request: web.Request, name: str, collection: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"The value '{raw}' is not an integer for {collection}.") from None


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


# -- bodies ---------------------------------------------------------------------------------

async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The raw body, refused with 413 from its Content-Length before reading when possible."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise too_large(declared, max_bytes)
    raw = await request.read()
    if len(raw) > max_bytes:
        raise too_large(len(raw), max_bytes)
    return raw


def parse_json(raw: bytes) -> Any:
    """The JSON value of a body; None for an empty one. Bad JSON is a 400.

    Parsed on the loop even when large: the json module holds the GIL throughout, so a
    thread would not let other requests run (48 MB of code stalls the loop ~0.1 s)."""
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise malformed(str(exc)) from exc


async def read_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """A body that must be a JSON object; an empty body counts as ``{}``."""
    value = parse_json(await read_body(request, max_bytes))
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise malformed("Object expected")
    return value


def json_size(value: Any) -> int:
    """Bytes of the compact JSON text of ``value`` (how OpenWhisk sizes values)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
