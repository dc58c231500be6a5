"""The OpenAPI 3 document of the whole API, served at ``/api/v1/api-docs`` (the path the API
root advertises in ``swagger_paths``), built from ``OPERATIONS``: one entry per route, with its
parameters, request body and answers, every error answer being OpenWhisk's error JSON.

``tests/hostile_input/test_openapi.py`` compares ``OPERATIONS`` with the application's router
both ways, so a route cannot be added without being described here, nor described without
existing. (HEAD is left out: aiohttp answers it for every GET, as GET without the body.)
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from aiohttp import web

from gateway.jsonio import json_response
from gateway.openapi_schemas import (
    ACTIVATION_ID_PATTERN,
    ANY,
    ENTITY_NAME_PATTERN,
    SCHEMAS,
    Schema,
    count_of,
    list_or_count,
    ref,
)

API_DOCS_PATH = "/api/v1/api-docs"
ANY_BODY = "*"  # an answer whose body is any JSON (an action's result)
NO_BODY = ""  # an answer without a body
# Answers that are not JSON, by media type (a schema name never holds a slash).
PROMETHEUS_TEXT = "text/plain"
HTML = "text/html"
EVENT_STREAM = "text/event-stream"
ANY_TEXT = "text/*"  # the dashboard's assets: JavaScript or CSS
DASHBOARD_EVENTS = "/api/v1/namespaces/{ns}/dashboard/events"
API_MANAGEMENT = "/api/v1/web/whisk.system/apimgmt/{call}"
ROUTES_PATH = "/api/{ns}/{tail}"

_NAME: Schema = {"type": "string", "pattern": ENTITY_NAME_PATTERN, "maxLength": 256}
PATH_PARAMETERS: dict[str, Schema] = {
    "ns": _NAME, "name": _NAME, "pkg": _NAME, "package": _NAME,
    "activation_id": {"type": "string", "pattern": ACTIVATION_ID_PATTERN},
    "tail": {"type": "string", "description": "action[.ext][/path] of a web action"},
    "filename": {"type": "string", "enum": ["dashboard.js", "dashboard.css"]},
    "call": {"type": "string", "description": "createApi.http, getApi.http or deleteApi.http"},
}
_FLAG: Schema = {"type": "boolean"}
QUERY_PARAMETERS: dict[str, Schema] = {
    "limit": {"type": "integer", "minimum": 0, "maximum": 200},
    "skip": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1},
    "count": _FLAG, "docs": _FLAG, "overwrite": _FLAG, "code": _FLAG, "blocking": _FLAG,
    "result": _FLAG, "force": _FLAG,
    "public": {"type": "string", "description": "Ignored, as by OpenWhisk (wsk sends it)."},
    "name": {"type": "string", "description": "action or package/action"},
    "since": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    "upto": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
    "timeout": {"type": "integer", "minimum": 1, "maximum": 60_000},
    "wait": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1,
             "description": "Milliseconds to wait for a record not written yet (404 if it still "
                            "is not); cut to the blocking invoke's longest wait. Not in "
                            "OpenWhisk."},
    "basepath": {"type": "string", "description": "an API's base path (or name)"},
    "relpath": {"type": "string", "description": "a route's path relative to the base path"},
    "operation": {"type": "string", "description": "a route's HTTP method"},
    "responsetype": {"type": "string", "enum": ["json", "http", "html", "text", "svg"]},
    "accesstoken": {"type": "string", "description": "Ignored (the npm client sends it)."},
    "spaceguid": {"type": "string", "description": "Ignored (the npm client sends it)."},
}
_LIST = ("limit", "skip", "count")

# Error answers every authenticated operation may give, and those of reading a body.
_AUTHENTICATED_ERRORS = (400, 401, 403, 404)
_BODY_ERRORS = (400, 408, 413, 415)
_ACTIVATE_ERRORS = (*_BODY_ERRORS, 429, 503)

_STATUS_TEXT = {
    200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad request",
    401: "Missing or invalid credentials", 403: "Not entitled to the namespace or package",
    404: "No such resource", 408: "The body did not arrive in time", 409: "Conflict",
    413: "Body larger than allowed", 415: "The body is not application/json",
    429: "Throttled", 500: "The action failed inside the platform (whisk internal error)",
    502: "The action failed (application or developer error)",
    503: "No broker to accept the request",
}


@dataclass(frozen=True)
class Operation:
    """One route: its method and aiohttp path, and what it takes and answers."""

    method: str
    path: str
    summary: str
    answers: dict[int, str]  # success status -> schema name, ANY_BODY or NO_BODY
    query: tuple[str, ...] = ()
    body: str | None = None  # schema name of a JSON request body
    errors: tuple[int, ...] = _AUTHENTICATED_ERRORS
    authenticated: bool = True


_NS = "/api/v1/namespaces/{ns}"
_ACTION = _NS + "/actions/{name}"
_PACKAGED = _NS + "/actions/{pkg}/{name}"
_ACTIVATION = _NS + "/activations/{activation_id}"
_TRIGGER = _NS + "/triggers/{name}"
_RULE = _NS + "/rules/{name}"
_PACKAGE = _NS + "/packages/{name}"
_INVOKE_ANSWERS = {200: ANY_BODY, 202: "ActivationId", 500: ANY_BODY, 502: ANY_BODY}
_INVOKE_QUERY = ("blocking", "result", "timeout")
_PUT_ERRORS = (*_AUTHENTICATED_ERRORS, *_BODY_ERRORS, 409)


def _entity_crud(path: str, noun: str, schema: str, put_schema: str) -> list[Operation]:
    return [
        Operation("PUT", path, f"Create or update a {noun}", {200: schema}, ("overwrite",),
                  put_schema, _PUT_ERRORS),
        # 409: the name is another collection's (names are unique across a namespace).
        Operation("GET", path, f"Get a {noun}", {200: schema},
                  errors=(*_AUTHENTICATED_ERRORS, 409)),
        Operation("DELETE", path, f"Delete a {noun}", {200: schema},
                  errors=(*_AUTHENTICATED_ERRORS, 409)),
    ]


OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/", "Platform information and limits", {200: "RootInfo"},
              errors=(), authenticated=False),
    Operation("GET", "/api/v1", "API information", {200: "ApiInfo"}, errors=(),
              authenticated=False),
    Operation("GET", "/api/v1/", "API information", {200: "ApiInfo"}, errors=(),
              authenticated=False),
    Operation("GET", API_DOCS_PATH, "This document", {200: ANY_BODY}, errors=(),
              authenticated=False),
    Operation("GET", "/invokers", "Invoker health", {200: "Invokers"}, errors=(),
              authenticated=False),
    Operation("GET", "/api/v1/namespaces", "The caller's namespace",
              {200: "NamespaceList"}, errors=(401,)),
    Operation("GET", _NS + "/limits", "The namespace's limits", {200: "NamespaceLimits"}),
    # actions
    Operation("GET", _NS + "/actions", "List actions", {200: "ActionList"}, _LIST),
    *_entity_crud(_ACTION, "action", "Action", "ActionPut"),
    Operation("POST", _ACTION, "Invoke an action", _INVOKE_ANSWERS, _INVOKE_QUERY,
              "InvokeArguments", (*_AUTHENTICATED_ERRORS, *_ACTIVATE_ERRORS)),
    Operation("GET", _NS + "/actions/{pkg}/", "List the actions of a package",
              {200: "ActionList"}, _LIST),
    *_entity_crud(_PACKAGED, "packaged action", "Action", "ActionPut"),
    Operation("POST", _PACKAGED, "Invoke an action of a package", _INVOKE_ANSWERS,
              _INVOKE_QUERY, "InvokeArguments", (*_AUTHENTICATED_ERRORS, *_ACTIVATE_ERRORS)),
    Operation("POST", "/api/v1/namespaces/whisk.system/actions/{package}/{name}",
              "Invoke a catalog action of whisk.system (the built-in feeds included)",
              _INVOKE_ANSWERS, _INVOKE_QUERY, "InvokeArguments",
              (*_AUTHENTICATED_ERRORS, *_ACTIVATE_ERRORS)),
    # activations
    Operation("GET", _NS + "/activations", "List activations", {200: "ActivationList"},
              (*_LIST, "docs", "name", "since", "upto")),
    Operation("GET", _ACTIVATION, "Get an activation", {200: "Activation"}, ("wait",)),
    Operation("GET", _ACTIVATION + "/result", "An activation's result",
              {200: "ActivationResult"}, ("wait",)),
    Operation("GET", _ACTIVATION + "/logs", "An activation's logs", {200: "ActivationLogs"},
              ("wait",)),
    # triggers
    Operation("GET", _NS + "/triggers", "List triggers", {200: "TriggerList"}, _LIST),
    *_entity_crud(_TRIGGER, "trigger", "Trigger", "TriggerPut"),
    Operation("POST", _TRIGGER, "Fire a trigger", {202: "ActivationId", 204: NO_BODY},
              body="FirePayload", errors=(*_AUTHENTICATED_ERRORS, *_ACTIVATE_ERRORS)),
    # rules
    Operation("GET", _NS + "/rules", "List rules", {200: "RuleList"}, _LIST),
    *_entity_crud(_RULE, "rule", "Rule", "RulePut"),
    Operation("POST", _RULE, "Enable or disable a rule", {200: NO_BODY}, body="RuleState",
              errors=(*_AUTHENTICATED_ERRORS, *_BODY_ERRORS, 409)),
    # packages
    Operation("GET", _NS + "/packages", "List packages", {200: "PackageList"},
              (*_LIST, "public")),
    Operation("PUT", _PACKAGE, "Create or update a package or binding", {200: "Package"},
              ("overwrite",), "PackagePut", _PUT_ERRORS),
    Operation("GET", _PACKAGE, "Get a package with its actions and feeds",
              {200: "PackageWithContents"}),
    Operation("DELETE", _PACKAGE, "Delete a package", {200: "Package"}, ("force",),
              errors=(*_AUTHENTICATED_ERRORS, 409)),
    # seeing it work (gateway/observability.py)
    Operation("GET", "/metrics", "Prometheus metrics of the cluster's activations and this "
              "gateway (an administrator's key)", {200: PROMETHEUS_TEXT}, errors=(401, 403)),
    Operation("GET", "/dashboard", "The dashboard page", {200: HTML}, errors=(),
              authenticated=False),
    Operation("GET", "/dashboard/static/{filename}", "The dashboard's script or style sheet",
              {200: ANY_TEXT}, errors=(404,), authenticated=False),
    Operation("GET", _NS + "/dashboard", "The dashboard's numbers for the caller's namespace "
              "(an administrator's: every namespace)", {200: "DashboardSnapshot"}),
    Operation("GET", DASHBOARD_EVENTS, "The same snapshot every second, as server-sent "
              "events, until the client goes", {200: EVENT_STREAM}),
    # API routes (gateway/api_routes.py): OpenWhisk's apimgmt web actions of whisk.system.
    Operation("POST", API_MANAGEMENT, "Create an API route (createApi.http)", {200: ANY_BODY},
              ("responsetype", "accesstoken", "spaceguid"), "ApiRouteCreate",
              (*_AUTHENTICATED_ERRORS, *_BODY_ERRORS)),
    Operation("GET", API_MANAGEMENT, "The caller's API routes, as Swagger (getApi.http)",
              {200: "ApiRouteList"},
              ("basepath", "relpath", "operation", "limit", "skip", "accesstoken",
               "spaceguid")),
    Operation("DELETE", API_MANAGEMENT, "Delete an API or some of its routes (deleteApi.http)",
              {200: ANY_BODY}, ("basepath", "relpath", "operation", "force", "accesstoken",
                                "spaceguid")),
)

# Web actions answer whatever the action makes them answer; authentication is optional.
WEB_PATH = "/api/v1/web/{ns}/{pkg}/{tail}"
WEB_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _lists() -> dict[str, Schema]:
    return {
        "NamespaceList": {"type": "array", "items": {"type": "string"}},
        "ActionList": list_or_count("ActionSummary", "actions"),
        # Summaries, or whole records with ?docs=true (a record also has a summary's fields).
        "ActivationList": {"oneOf": [
            {"type": "array", "items": {"anyOf": [ref("ActivationSummary"),
                                                   ref("Activation")]}},
            count_of("activations"),
        ]},
        "TriggerList": list_or_count("TriggerSummary", "triggers"),
        "RuleList": list_or_count("RuleSummary", "rules"),
        "PackageList": list_or_count("PackageSummary", "packages"),
    }


def _parameters(op: Operation) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, schema in PATH_PARAMETERS.items():
        if "{" + name + "}" in op.path:
            out.append({"name": name, "in": "path", "required": True, "schema": schema})
    out.extend({"name": name, "in": "query", "required": False,
                "schema": QUERY_PARAMETERS[name]} for name in op.query)
    return out


def _content(schema: str) -> dict[str, Any]:
    if schema == ANY_TEXT:
        return {media: {"schema": {"type": "string"}} for media in ("text/javascript",
                                                                     "text/css")}
    if "/" in schema:
        return {schema: {"schema": {"type": "string"}}}
    body = ANY if schema == ANY_BODY else ref(schema)
    return {"application/json": {"schema": body}}


def _responses(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, schema in op.answers.items():
        answer: dict[str, Any] = {"description": _STATUS_TEXT.get(status, "OK")}
        if schema != NO_BODY:
            answer["content"] = _content(schema)
        out[str(status)] = answer
    for status in sorted(set(op.errors)):
        if str(status) not in out:
            out[str(status)] = {"description": _STATUS_TEXT[status],
                                "content": _content("ErrorResponse")}
    return out


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method.lower()} {op.path}",
        "parameters": _parameters(op),
        "responses": _responses(op),
    }
    if op.body is not None:
        out["requestBody"] = {"required": False, "content": _content(op.body)}
    if not op.authenticated:
        out["security"] = []
    return out


def _web_operation(
    method: str, path: str = WEB_PATH,
    summary: str = "Call a web action (its answer is the action's)",
) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": f"{method.lower()} {path}",
        "parameters": [{"name": n, "in": "path", "required": True,
                        "schema": PATH_PARAMETERS[n]} for n in ("ns", "pkg", "tail")
                       if "{" + n + "}" in path],
        "security": [{}, {"basic": []}],
        "responses": {"default": {"description": "What the action answered, or an error"}},
    }


@cache
def build_document() -> dict[str, Any]:
    """The OpenAPI 3.0 document (built once; it only changes with the code)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    paths[WEB_PATH] = {method.lower(): _web_operation(method) for method in WEB_METHODS}
    paths[ROUTES_PATH] = {
        method.lower(): _web_operation(method, ROUTES_PATH, "Call an API route: its web action "
                                                            "answers (gateway/api_routes.py)")
        for method in WEB_METHODS}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Funtainer (OpenWhisk REST API)",
            "version": "1.0.0",
            "description": "Apache OpenWhisk's REST API as Funtainer serves it. Every error "
                           "answer is {\"error\": message, \"code\": transaction id}.",
        },
        "security": [{"basic": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
            "schemas": {**SCHEMAS, **_lists()},
        },
    }


async def api_docs(request: web.Request) -> web.Response:
    return json_response(build_document())
