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
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from bus.models import ActionDoc, StatusCode
from bus.requests import ParametersNotAllowed, build_payload, truthy
from bus.resolution import ResolutionError, resolve_package
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
    project,
    render,
    render_projected,
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


@dataclass(frozen=True)
class WebTarget:
    doc: ActionDoc
    base: dict[str, Any]  # the parameters its package (and binding) give it
    binding: str | None  # "ns/binding" when the URL names a binding
    extension: str
    rest: str  # the path after the extension


async def _find_action(request: web.Request, ns: str, package: str, tail: str) -> WebTarget:
    """The exported action ``ns/package/tail`` names, with its extension and the rest of the
    path; 404 when there is none or it is not exported (a missing action and an unexported
    one must look the same). The package may be a binding of the URL's namespace: the action
    is then the bound package's, with the binding's parameters over the package's, as for an
    invoke."""
    name, extension, rest = split_action_segment(tail)
    if not (is_entity_name(ns) and is_entity_name(package) and is_entity_name(name)):
        raise ApiError(404, NOT_FOUND)
    if package == DEFAULT_PACKAGE:
        doc, base, binding = await request.app[ACTIONS].get(ns, name), {}, None
    else:
        try:
            resolved = await resolve_package(request.app[STORE], ns, ns, package)
        except ResolutionError:
            raise ApiError(404, NOT_FOUND) from None
        # Actions in a package are stored under "<ns>/<package>".
        doc = await request.app[ACTIONS].get(resolved.actions_namespace, name)
        base, binding = resolved.base_parameters(), resolved.binding_path
    if doc is None or not truthy(doc.annotation("web-export")):
        raise ApiError(404, NOT_FOUND)
    return WebTarget(doc, base, binding, extension, rest)


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
    info = request.match_info
    return await serve_web_action(request, info["ns"], info["pkg"], info["tail"])


async def serve_web_action(
    request: web.Request, ns: str, package: str, tail: str,
    path_parameters: dict[str, str] | None = None,
) -> web.Response:
    """The web action ``/web/ns/package/tail`` answering ``request``; ``path_parameters`` (an
    API route's ``{id}``s, gateway/api_routes.py) join the arguments like query parameters."""
    if request.method not in METHODS:
        raise web.HTTPMethodNotAllowed(request.method, METHODS)
    target = await _find_action(request, ns, package, tail)
    doc, extension, rest = target.doc, target.extension, target.rest
    custom_options = truthy(doc.annotation("web-custom-options"))
    cors = {} if custom_options else _cors_headers(request)
    if request.method == "OPTIONS" and not custom_options:
        return web.Response(status=200, headers=cors)
    caller = await _caller(request)
    _check_whisk_auth(doc, request, caller)
    raw = await read_body(request, request.app[LIMITS].payload_bytes)
    raw_http = truthy(doc.annotation("raw-http"))
    arguments = build_arguments(request, raw, rest, caller, raw_http=raw_http)
    if path_parameters and not raw_http:
        arguments = {**path_parameters, **arguments}
    try:
        payload = build_payload(doc, arguments, base=target.base)
    except ParametersNotAllowed as exc:
        raise ApiError(400, PARAMETERS_NOT_ALLOWED) from exc

    # Owned and billed by the URL's namespace (the action's own, or the binding's), whoever
    # called.
    activation_id, record = await activate(
        request.app, doc, payload, namespace=ns,
        tid=transaction_id(request), wait_ms=request.app[SETTINGS].max_blocking_wait_ms,
        binding=target.binding, traceparent=request.headers.get("traceparent"),
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
    # Past the extension, the path names a field of the result to answer with (not for
    # .http, whose path is only the action's __ow_path).
    projection = [name for name in rest.split("/") if name]
    try:
        if projection and extension != DEFAULT_EXTENSION:
            answer = render_projected(extension, project(result, projection))
        else:
            answer = render(extension, result)
    except ApiError as exc:
        raise ApiError(exc.status, exc.message, headers) from None
    return _to_response(answer, headers)
