"""Request bodies: read within a size and a time limit, JSON only where OpenWhisk wants JSON,
and parsed into values every later step can carry.

A parsed value goes on to msgpack (the bus), Redis (entities, records), ``json.dumps`` (every
answer) and the runtimes' JSON parsers, so input that one of those could not take back is
refused here with a 400 rather than failing later as a 500, or as an activation that cannot be
sent: nesting deeper than ``MAX_JSON_DEPTH``, unpaired surrogate escapes (not Unicode, cannot
be encoded as UTF-8), ``NaN``/``Infinity`` and numbers outside 64 bits.

Order of checks (OpenWhisk's): a declared ``Content-Length`` over the limit is a 413 before
anything else; then a body that is not labelled JSON is a 415 (Pekko's ``forContentTypes``,
with its message); then the body is read (413 when a body without a length outgrows the
limit), then parsed (400, Pekko's "The request content was malformed").
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestPayloadError

from gateway.errors import ApiError, malformed, too_large
from gateway.state import SETTINGS

JSON_MEDIA_TYPE = "application/json"
# Pekko's type for a body sent without a Content-Type header.
UNTYPED_MEDIA_TYPE = "application/octet-stream"

# spray-json refuses nesting over 1000; Python's own recursion limit (1000 frames, shared by
# json.dumps' C encoder with the handler's own stack) cannot carry that through an answer, so
# the limit is 512: every step above takes it with room to spare.
MAX_JSON_DEPTH = 512
_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1  # msgpack carries integers from -2**63 to 2**64-1
_SHOWN_NUMBER = 40  # characters of an out-of-range number quoted in the message

# \uD800-\uDFFF escapes: a pair is combined by the parser, a lone one is left in the string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def too_deep() -> ApiError:
    # spray-json's message, with our limit.
    return malformed(
        "JSON input nested too deeply:JSON input was nested more deeply than the configured "
        f"limit of maxNesting = {MAX_JSON_DEPTH}"
    )


def unsupported_media_type(shown: str) -> ApiError:
    """Pekko's rejection text for a body whose Content-Type is not JSON."""
    return ApiError(
        415, f"The request's Content-Type [{shown}] is not supported. Expected:\n{JSON_MEDIA_TYPE}"
    )


# -- reading --------------------------------------------------------------------------------


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The raw body, at most ``max_bytes``, refused with 413 from its Content-Length before
    reading when it has one. A body without a length is read in chunks and only counted once
    past the limit, so memory stays bounded; its size is counted up to the server's hard limit
    (``client_max_size``) for the message. A body that does not arrive within the gateway's
    read timeout is a 408."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise too_large(declared, max_bytes)
    timeout_s = request.app[SETTINGS].gateway_read_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_limited(request, max_bytes)
    except TimeoutError:
        raise ApiError(
            408, f"The request body was not received within {timeout_s:g} seconds."
        ) from None
    except RequestPayloadError as exc:  # bad chunked framing, a body cut short
        raise malformed(str(exc)) from None


async def _read_limited(request: web.Request, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > max_bytes:
            await _count_rest(request, size, max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


async def _count_rest(request: web.Request, size: int, max_bytes: int) -> None:
    """Raise the 413 of a body without a length: discard the rest, counting it."""
    hard_limit = max(request.client_max_size, max_bytes)
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > hard_limit:
            raise ApiError(413, f"Request larger than allowed: more than {hard_limit} bytes.")
    raise too_large(size, max_bytes)


def _shown_content_type(header: str) -> str:
    """A Content-Type as Pekko prints it: the media type lower-cased, parameters as sent."""
    media, *params = (part.strip() for part in header.split(";"))
    return "; ".join([media.lower(), *(p for p in params if p)])


def _charset(request: web.Request, header: str) -> str:
    """The body's declared charset (UTF-8 when none); an unknown one cannot be read: 415."""
    charset = request.charset or "utf-8"
    try:
        return codecs.lookup(charset).name
    except LookupError:
        raise unsupported_media_type(_shown_content_type(header)) from None


async def read_json(
    request: web.Request, max_bytes: int, *, expected: str = "Object expected"
) -> Any:
    """The JSON value of a body that must be JSON; None for an empty body. A body that is
    JSON's ``null`` is not an empty body: it is refused with ``expected`` (what the endpoint
    wants), as a string or a number would be."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise too_large(declared, max_bytes)
    header = request.headers.get(hdrs.CONTENT_TYPE)
    is_json = header is not None and request.content_type.lower() == JSON_MEDIA_TYPE
    # A body sent without a Content-Type is application/octet-stream to Pekko. An empty body
    # is accepted whatever its type (Pekko would refuse a non-JSON label even on no body, but
    # there is nothing to misread, and clients such as aiohttp label an empty POST
    # application/octet-stream).
    shown = _shown_content_type(header) if header is not None else UNTYPED_MEDIA_TYPE
    if declared and not is_json:
        raise unsupported_media_type(shown)
    charset = _charset(request, header) if header is not None and is_json else "utf-8"
    raw = await read_body(request, max_bytes)
    if raw and not is_json:
        raise unsupported_media_type(shown)
    value = parse_json(raw, charset)
    if value is None and raw.strip():
        raise malformed(expected)
    return value


async def read_object(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """A body that must be a JSON object; an empty body counts as ``{}``."""
    value = await read_json(request, max_bytes)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise malformed("Object expected")
    return value


# -- parsing --------------------------------------------------------------------------------


class _Refused(ValueError):
    """A JSON text that is well formed but holds something we cannot carry."""


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN_NUMBER else text[:_SHOWN_NUMBER] + "..."


def _checked_int(text: str) -> int:
    value = int(text)  # Python refuses over 4300 digits itself (a ValueError)
    if not _INT64_MIN <= value <= _UINT64_MAX:
        raise _Refused(f"number {_shown(text)} is out of range")
    return value


def _checked_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused(f"number {_shown(text)} is out of range")
    return value


def _refuse_constant(text: str) -> Any:
    raise _Refused(f"{text} is not a valid JSON value")


def parse_json(raw: bytes, charset: str = "utf-8") -> Any:
    """The JSON value of a body; None for an empty one. Anything we could not carry is a 400.

    Parsed on the loop even when large: the json module holds the GIL throughout, so a
    thread would not let other requests run (48 MB of code stalls the loop ~0.1 s)."""
    if not raw.strip():
        return None
    try:
        text = raw.decode(charset)
        value = json.loads(
            text, parse_int=_checked_int, parse_float=_checked_float,
            parse_constant=_refuse_constant,
        )
    except RecursionError:  # deeper than the C parser's own limit: far over ours
        raise too_deep() from None
    except ValueError as exc:  # incl. UnicodeDecodeError and _Refused
        raise malformed(str(exc)) from None
    check_carriable(value, text)
    return value


def check_carriable(value: Any, text: str) -> None:
    """Refuse nesting over ``MAX_JSON_DEPTH`` and unpaired surrogates. The walk is iterative
    and only made when the text could hold either (cheap counts on the text first)."""
    deep = text.count("[") + text.count("{") > MAX_JSON_DEPTH
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    if not deep and not surrogates:
        return
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth + 1 > MAX_JSON_DEPTH:
                raise too_deep()
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
            if surrogates and isinstance(item, dict):
                stack.extend((key, depth) for key in item)
        elif surrogates and isinstance(item, str):
            _check_unicode(item)


def _check_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = ord(text[exc.start])
        raise malformed(
            f"the string escape \\u{bad:04x} is an unpaired surrogate, not a Unicode character"
        ) from None
