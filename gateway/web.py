"""Web actions: ``/api/v1/web/{ns}/{pkg|default}/{action}{.ext}{/rest}`` (OpenWhisk's
``WebActions.scala``).

Anyone may call an action its owner annotated ``web-export``; the activation is the owner's.
The request becomes the action's arguments (``__ow_*`` plus merged query and body), the
activation is blocking internally, and its result is rendered per extension
(``gateway.web_responses``).
"""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bus.models import ActionDoc, StatusCode
from bus.requests import ParametersNotAllowed, build_payload, truthy
from bus.resolution import get_package, inherited_parameters
from gateway.auth import Identity
from gateway.bodies import parse_json, read_body
from gateway.errors import (
    AUTH_MISSING,
    NOT_FOUND,
    PARAMETERS_NOT_ALLOWED,
    WWW_AUTHENTICATE,
    ApiError,
    transaction_id,
)
from gateway.invoke import ACTIVATION_ID_HEADER, activate
from gateway.state import ACTIONS, AUTHENTICATOR, LIMITS, SETTINGS, STORE
from gateway.validation import is_entity_name, request_headers
from gateway.web_responses import (
    DEFAULT_EXTENSION,
    EXTENSIONS,
    WebAnswer,
    is_binary_type,
    media_type,
    render,
)

log = logging.getLogger(__name__)

DEFAULT_PACKAGE = "default"
PROCESSING_ERROR = "There was an error processing your request."
NOT_READY = "Response not yet ready."
SECRET_HEADER = "X-Require-Whisk-Auth"
RESERVED = frozenset(
    {"__ow_method", "__ow_headers", "__ow_path", "__ow_user", "__ow_body", "__ow_query"})

CORS_ALLOW_METHODS = "OPTIONS, GET, DELETE, POST, PUT, HEAD, PATCH"
CORS_DEFAULT_HEADERS = (
    "Authorization, Origin, X-Requested-With, Content-Type, Accept, User-Agent"
)
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def split_action_segment(tail: str) -> tuple[str, str, str]:
    """``name.ext/rest`` -> (name, extension, rest); an unknown suffix stays in the name."""
    segment, slash, rest = tail.partition("/")
    stem, dot, suffix = segment.rpartition(".")
    if dot and f".{suffix}" in EXTENSIONS:
        name, extension = stem, f".{suffix}"
    else:
        name, extension = segment, DEFAULT_EXTENSION
    return name, extension, slash + rest


async def _caller(request: web.Request) -> Identity | None:
    """Authentication is optional on web actions; credentials that are sent must be valid."""
    return await request.app[AUTHENTICATOR].from_request(request)


def _check_whisk_auth(doc: ActionDoc, request: web.Request, caller: Identity | None) -> None:
    required = doc.annotation("require-whisk-auth")
    if not truthy(required):
        return
    if required is True:
        if caller is None:
            raise ApiError(401, AUTH_MISSING, WWW_AUTHENTICATE)
        return
    if isinstance(required, str | int | float):
        secret = str(int(required)) if isinstance(required, float) and required.is_integer() \
            else str(required)
        if request.headers.get(SECRET_HEADER) != secret:
            raise ApiError(401, AUTH_MISSING)


async def _find_action(request: web.Request) -> tuple[ActionDoc, dict[str, Any], str, str]:
    """The exported action, the parameters its package gives it, its extension and the rest
    of the path; 404 when not exported (a missing action and an unexported one must look the
    same). As in OpenWhisk, a binding does not reach web actions: the action is looked up
    where it is stored."""
    ns, package = request.match_info["ns"], request.match_info["pkg"]
    name, extension, rest = split_action_segment(request.match_info["tail"])
    if not (is_entity_name(ns) and is_entity_name(package) and is_entity_name(name)):
        raise ApiError(404, NOT_FOUND)
    store = request.app[STORE]
    # Actions in a package are stored under "<ns>/<package>".
    owner = ns if package == DEFAULT_PACKAGE else f"{ns}/{package}"
    doc = await request.app[ACTIONS].get(owner, name)
    if doc is None or not truthy(doc.annotation("web-export")):
        raise ApiError(404, NOT_FOUND)
    base: dict[str, Any] = {}
    if package != DEFAULT_PACKAGE and (pkg := await get_package(store, ns, package)):
        base = inherited_parameters(pkg, None)
    return doc, base, extension, rest


def _cors_headers(request: web.Request) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": "*",
        "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
        "Access-Control-Allow-Headers": request.headers.get(
            "Access-Control-Request-Headers", CORS_DEFAULT_HEADERS),
    }


def _body_argument(raw: bytes, content_type: str, *, raw_http: bool) -> str:
    """``__ow_body``: base64 for binary and JSON media types, text otherwise."""
    mtype = media_type(content_type)
    if is_binary_type(mtype) or mtype == "application/json" or (raw_http and not mtype):
        return base64.b64encode(raw).decode()
    return raw.decode(errors="replace")


def _structured_body(raw: bytes, content_type: str) -> dict[str, Any] | None:
    """The body's fields when it is a JSON object or a form; None when it is opaque."""
    mtype = media_type(content_type)
    if mtype == "application/json":
        # Checked as every JSON body is (depth, numbers, surrogates): it goes on to msgpack.
        value = parse_json(raw)
        return value if isinstance(value, dict) else None
    if mtype == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode(errors="replace"), keep_blank_values=True))
    return None


def build_arguments(
    request: web.Request, raw: bytes, rest: str, caller: Identity | None, *, raw_http: bool
) -> dict[str, Any]:
    content_type = request.headers.get("Content-Type", "")
    context: dict[str, Any] = {
        "__ow_method": request.method.lower(),
        "__ow_headers": request_headers(request),
        "__ow_path": rest,
    }
    if caller is not None:
        context["__ow_user"] = caller.namespace
    if raw_http:
        context["__ow_query"] = request.query_string
        context["__ow_body"] = _body_argument(raw, content_type, raw_http=True) if raw else ""
        return context
    args: dict[str, Any] = dict(request.query)
    if raw:
        fields = _structured_body(raw, content_type)
        if fields is None:
            context["__ow_body"] = _body_argument(raw, content_type, raw_http=False)
        else:
            args |= fields
    if RESERVED.intersection(args):
        raise ApiError(400, PARAMETERS_NOT_ALLOWED)
    return args | context


def _to_response(answer: WebAnswer, extra: dict[str, str]) -> web.Response:
    response = web.Response(status=answer.status, body=answer.body or None)
    if answer.content_type:
        response.headers["Content-Type"] = answer.content_type
    for name, value in answer.headers:
        response.headers.add(name, value)
    for name, value in extra.items():
        if name not in response.headers:
            response.headers[name] = value
    return response


async def web_action(request: web.Request) -> web.Response:
    if request.method not in METHODS:
        raise web.HTTPMethodNotAllowed(request.method, METHODS)
    doc, base, extension, rest = await _find_action(request)
    custom_options = truthy(doc.annotation("web-custom-options"))
    cors = {} if custom_options else _cors_headers(request)
    if request.method == "OPTIONS" and not custom_options:
        return web.Response(status=200, headers=cors)
    caller = await _caller(request)
    _check_whisk_auth(doc, request, caller)
    raw = await read_body(request, request.app[LIMITS].payload_bytes)
    raw_http = truthy(doc.annotation("raw-http"))
    arguments = build_arguments(request, raw, rest, caller, raw_http=raw_http)
    try:
        payload = build_payload(doc, arguments, base=base)
    except ParametersNotAllowed as exc:
        raise ApiError(400, PARAMETERS_NOT_ALLOWED) from exc

    # Owned and billed by the action's namespace, whoever called.
    owner = doc.namespace.split("/", 1)[0]
    activation_id, record = await activate(
        request.app, doc, payload, namespace=owner,
        tid=transaction_id(request), wait_ms=request.app[SETTINGS].max_blocking_wait_ms,
        traceparent=request.headers.get("traceparent"),
    )
    headers = {ACTIVATION_ID_HEADER: activation_id, **cors}
    if record is None:
        raise ApiError(202, NOT_READY, headers)
    status = record.response.status_code
    if status == StatusCode.SUCCESS:
        result = record.response.result
    elif status == StatusCode.APPLICATION_ERROR and isinstance(record.response.result, dict):
        result = record.response.result.get("error")  # the error is rendered like a result
    else:
        raise ApiError(400, PROCESSING_ERROR, headers)
    try:
        answer = render(extension, result)
    except ApiError as exc:
        raise ApiError(exc.status, exc.message, headers) from None
    return _to_response(answer, headers)
