"""Turning a web action's result into an HTTP answer, per extension (OpenWhisk's
``WebActions.scala`` transcoders). Pure functions; a result that cannot be rendered is an
``ApiError`` with OpenWhisk's exact message."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import ApiError

INVALID_JSON = "Response is not valid 'application/json'."
INVALID_HTTP = "Response is not valid 'message/http'."
INVALID_HTML = "Response is not valid 'text/html'."
INVALID_SVG = "Response is not valid 'image/svg+xml'."
INVALID_TEXT = "Response is not valid 'text/plain'."
PROPERTY_NOT_FOUND = "Response does not include requested property."

EXTENSIONS = (".http", ".json", ".html", ".svg", ".text")
DEFAULT_EXTENSION = ".http"

# Media types Pekko does not treat as binary; everything else (images, audio, octet-stream,
# pdf, zip...) carries base64 in a JSON string.
_TEXTUAL_APPLICATION = {
    "application/json", "application/xml", "application/javascript",
    "application/x-www-form-urlencoded", "application/ecmascript",
}


@dataclass
class WebAnswer:
    status: int
    body: bytes = b""
    content_type: str | None = None
    # A list of pairs, not a dict: array-valued headers become repeated headers.
    headers: list[tuple[str, str]] = field(default_factory=list)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_type(mtype: str) -> bool:
    return mtype == "application/json" or (mtype.startswith("application/")
                                           and mtype.endswith("+json"))


def is_binary_type(mtype: str) -> bool:
    if not mtype:
        return False
    main, _, sub = mtype.partition("/")
    if main in ("image", "audio", "video"):
        return True
    if main == "text" or mtype in _TEXTUAL_APPLICATION:
        return False
    return not (main == "application" and (sub.endswith("+json") or sub.endswith("+xml")))


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _field(result: Any, *names: str) -> Any:
    if not isinstance(result, dict):
        return None
    for name in names:
        if name in result:
            return result[name]
    return None


def render(extension: str, result: Any) -> WebAnswer:
    if extension == ".json":
        return as_json(result)
    if extension == ".html":
        return _as_string_media(_field(result, "html", "body"), "text/html; charset=UTF-8",
                                INVALID_HTML)
    if extension == ".svg":
        return _as_string_media(_field(result, "svg", "body"), "image/svg+xml", INVALID_SVG)
    if extension == ".text":
        return as_text(result)
    return as_http(result)


def project(result: Any, path: list[str]) -> Any:
    """The field ``path`` names inside the result (``.json/body/x``: ``result["body"]["x"]``);
    404 if there is none."""
    for name in path:
        if not isinstance(result, dict) or name not in result:
            raise ApiError(404, PROPERTY_NOT_FOUND)
        result = result[name]
    return result


def render_projected(extension: str, value: Any) -> WebAnswer:
    """A projected field, rendered as the extension says: ``.json`` an object or array,
    ``.html`` and ``.svg`` a string, ``.text`` any JSON value as text."""
    if extension == ".json":
        return as_json(value)
    if extension == ".html":
        return _as_string_media(value, "text/html; charset=UTF-8", INVALID_HTML)
    if extension == ".svg":
        return _as_string_media(value, "image/svg+xml", INVALID_SVG)
    return WebAnswer(200, _as_text(value).encode(), "text/plain; charset=UTF-8")


def _as_text(value: Any) -> str:
    """As OpenWhisk prints a JSON value for ``.text``: strings bare, objects pretty-printed,
    everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return json.dumps(value, separators=(", ", ": "), ensure_ascii=False)


def as_json(result: Any) -> WebAnswer:
    if not isinstance(result, dict | list):
        raise ApiError(400, INVALID_JSON)
    return WebAnswer(200, _json_bytes(result), "application/json")


def _as_string_media(value: Any, content_type: str, message: str) -> WebAnswer:
    if not isinstance(value, str):
        raise ApiError(400, message)
    return WebAnswer(200, value.encode(), content_type)


def as_text(result: Any) -> WebAnswer:
    value = _field(result, "text", "body")
    if value is None:
        raise ApiError(400, INVALID_TEXT)
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return WebAnswer(200, text.encode(), "text/plain; charset=UTF-8")


def _status_code(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ApiError(400, INVALID_HTTP)
    if isinstance(value, int | float) and value == int(value):
        code = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        code = int(value.strip())
    else:
        raise ApiError(400, INVALID_HTTP)
    if not 100 <= code <= 599:
        raise ApiError(400, INVALID_HTTP)
    return code


def _header_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise ApiError(400, INVALID_HTTP)


def _headers(value: Any) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, dict):
        raise ApiError(400, INVALID_HTTP)
    pairs: list[tuple[str, str]] = []
    for name, raw in value.items():
        for item in raw if isinstance(raw, list) else [raw]:
            pairs.append((name, _header_text(item)))
    return pairs


def _decode_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def as_http(result: Any) -> WebAnswer:
    if not isinstance(result, dict):
        raise ApiError(400, INVALID_HTTP)
    status = _status_code(result.get("statusCode"))
    headers = _headers(result.get("headers"))
    declared = next((v for k, v in headers if k.lower() == "content-type"), None)
    # The content type travels separately from the other headers.
    headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
    body = result.get("body")
    if body is None or body == "":
        return WebAnswer(status or 204, b"", declared, headers)
    if isinstance(body, str):
        content_type = declared or "text/html; charset=UTF-8"
        mtype = media_type(content_type)
        if is_binary_type(mtype):
            decoded = _decode_base64(body)
            if decoded is None:
                raise ApiError(400, INVALID_HTTP)
            data = decoded
        elif is_json_type(mtype):
            # A base64 JSON body is accepted for OpenWhisk's legacy clients; plain JSON too.
            data = _decode_base64(body) or body.encode()
        else:
            data = body.encode()
        return WebAnswer(status or 200, data, content_type, headers)
    content_type = declared if declared and is_json_type(media_type(declared)) else None
    return WebAnswer(status or 200, _json_bytes(body), content_type or "application/json",
                     headers)
