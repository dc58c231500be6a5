"""API routes: web actions exposed as REST APIs, as OpenWhisk's API gateway does it.

Clients manage routes through the web actions of ``whisk.system/apimgmt`` (what the npm
client's ``routes`` and ``wsk api`` call):

  POST   /api/v1/web/whisk.system/apimgmt/createApi.http   body {"apidoc": {...}}
  GET    /api/v1/web/whisk.system/apimgmt/getApi.http      ?basepath=&relpath=&operation=
  DELETE /api/v1/web/whisk.system/apimgmt/deleteApi.http   ?basepath=&relpath=&operation=

An API is a base path with routes (relative path, method, action, response type), stored per
namespace in Redis (``ft:apis:<ns>``, a hash base path -> JSON). ``getApi`` answers with the
Swagger 2.0 document OpenWhisk's gateway keeps. A route answers at
``/api/<namespace>/<base path>/<relative path>`` (``{name}`` segments match anything and
reach the action as parameters) by running its action as a web action with the route's
response type (``json`` unless created with another of ``http``, ``html``, ``text``,
``svg``), CORS headers included.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from gateway.bodies import read_json
from gateway.errors import AUTH_MISSING, NOT_FOUND, WWW_AUTHENTICATE, ApiError
from gateway.jsonio import json_response
from gateway.state import AUTHENTICATOR, LIMITS, SETTINGS, STORE
from gateway.web import serve_web_action

MANAGEMENT = "/api/v1/web/whisk.system/apimgmt/{call}"
# Any namespace but "v1": the API's own paths keep their 404s and 405s.
ROUTES = "/api/{ns:(?!v1/)[^/]+}/{tail:.+}"
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")
RESPONSE_TYPES = ("json", "http", "html", "text", "svg")
_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%-]+$|^\{[A-Za-z_][A-Za-z0-9_]*\}$")


def _key(ns: str) -> str:
    return f"ft:apis:{ns}"


@dataclass
class Route:
    path: str  # "/books/{id}"
    method: str  # lowercase
    action_namespace: str
    action: str  # "name" or "package/name"
    response_type: str = "json"

    def matches(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters if this route serves ``method path``, else None."""
        if method != self.method:
            return None
        wanted, given = _segments(self.path), _segments(path)
        if len(wanted) != len(given):
            return None
        found: dict[str, str] = {}
        for pattern, value in zip(wanted, given, strict=True):
            if pattern.startswith("{"):
                found[pattern[1:-1]] = value
            elif pattern != value:
                return None
        return found


@dataclass
class Api:
    base_path: str
    name: str
    routes: list[Route] = field(default_factory=list)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Api:
        data = json.loads(raw)
        return cls(data["base_path"], data["name"], [Route(**r) for r in data["routes"]])


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _normal_path(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ApiError(400, f"The {what} must be a path starting with '/'.")
    parts = _segments(value)
    if not all(_SEGMENT.match(part) for part in parts):
        raise ApiError(400, f"The {what} '{value}' is not a valid path.")
    return "/" + "/".join(parts)


def _swagger(api: Api, api_host: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in api.routes:
        package, _, name = route.action.rpartition("/")
        paths.setdefault(route.path, {})[route.method] = {
            "operationId": f"{route.method}{route.path}",
            "responses": {"default": {"description": "Default response"}},
            "x-openwhisk": {
                "namespace": route.action_namespace, "package": package, "action": name,
                "url": f"{api_host}/api/v1/web/{route.action_namespace}/"
                       f"{package or 'default'}/{name}.{route.response_type}",
            },
        }
    return {"swagger": "2.0", "basePath": api.base_path,
            "info": {"title": api.name, "version": "1.0.0"}, "paths": paths}


def _entry(api: Api, ns: str, api_host: str) -> dict[str, Any]:
    """One API as OpenWhisk's gateway lists it (the CLIs read ``value``)."""
    key = f"API:{ns}:{api.base_path}"
    return {"id": key, "key": key, "value": {
        "namespace": ns, "gwApiActivated": True, "tenantId": ns,
        "gwApiUrl": f"{api_host}/api/{ns}{api.base_path}",
        "apidoc": _swagger(api, api_host)}}


async def _caller_namespace(request: web.Request) -> str:
    found = await request.app[AUTHENTICATOR].from_request(request)
    if found is None:
        raise ApiError(401, AUTH_MISSING, WWW_AUTHENTICATE)
    return found.namespace


async def _apis(request: web.Request, ns: str) -> dict[str, Api]:
    stored = await request.app[STORE].redis.hgetall(_key(ns))
    return {k.decode(): Api.from_json(v) for k, v in stored.items()}


async def _save(request: web.Request, ns: str, api: Api) -> None:
    redis = request.app[STORE].redis
    if api.routes:
        await redis.hset(_key(ns), api.base_path, json.dumps(asdict(api)))
    else:
        await redis.hdel(_key(ns), api.base_path)


async def manage(request: web.Request) -> web.Response:
    call = request.match_info["call"].removesuffix(".http")
    handler = {("POST", "createApi"): _create, ("GET", "getApi"): _get,
               ("DELETE", "deleteApi"): _delete}.get((request.method, call))
    if handler is None:
        raise ApiError(404, NOT_FOUND)
    return await handler(request, await _caller_namespace(request))


async def _create(request: web.Request, ns: str) -> web.Response:
    body = await read_json(request, request.app[LIMITS].payload_bytes)
    doc = body.get("apidoc") if isinstance(body, dict) else None
    if not isinstance(doc, dict):
        raise ApiError(400, "The request needs an 'apidoc' object.")
    _strings(doc, "apidoc", ("namespace", "gatewayBasePath", "gatewayPath", "gatewayMethod",
                             "id", "apiName"))
    if doc.get("swagger") is not None:  # wsk api create --config-file
        api = _from_swagger(doc["swagger"], ns)
    else:
        api = await _with_route(request, ns, doc)
    await _save(request, ns, api)
    return json_response(_entry(api, ns, request.app[SETTINGS].api_host)["value"])


async def _with_route(request: web.Request, ns: str, doc: dict[str, Any]) -> Api:
    """The API at the apidoc's base path with its one route added (or replaced)."""
    base = _normal_path(doc.get("gatewayBasePath") or "/", "base path")
    path = _normal_path(doc.get("gatewayPath"), "relative path")
    method = str(doc.get("gatewayMethod") or "").lower()
    if method not in METHODS:
        allowed = ", ".join(m.upper() for m in METHODS)
        raise ApiError(400, f"The operation must be one of {allowed}.")
    action = doc.get("action")
    if not isinstance(action, dict) or not isinstance(action.get("name"), str):
        raise ApiError(400, "The apidoc needs an 'action' with a 'name'.")
    _strings(action, "action", ("namespace", "backendMethod", "backendUrl", "authkey"))
    response_type = request.query.get("responsetype", "json")
    if response_type not in RESPONSE_TYPES:
        raise ApiError(400, f"The response type must be one of {', '.join(RESPONSE_TYPES)}.")
    action_ns = str(action.get("namespace") or "_")
    route = Route(path, method, ns if action_ns == "_" else action_ns,
                  action["name"].strip("/"), response_type)
    apis = await _apis(request, ns)
    api = apis.get(base) or Api(base, str(doc.get("apiName") or base))
    api.routes = [r for r in api.routes if (r.path, r.method) != (path, method)] + [route]
    return api


def _from_swagger(raw: Any, ns: str) -> Api:
    """A whole API from a Swagger 2.0 document, as getApi answers it: each operation names
    its action in ``x-openwhisk`` (``namespace``, ``package``, ``action``, and a ``url``
    whose extension is the response type). It replaces the API at its base path."""
    try:
        swagger = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ApiError(400, "The swagger is not valid JSON.") from None
    if not isinstance(swagger, dict) or not isinstance(swagger.get("paths"), dict):
        raise ApiError(400, "The swagger needs a 'paths' object.")
    base = _normal_path(swagger.get("basePath") or "/", "base path")
    info = swagger.get("info")
    title = info.get("title") if isinstance(info, dict) else None
    routes: list[Route] = []
    for raw_path, operations in swagger["paths"].items():
        path = _normal_path(raw_path, "relative path")
        if not isinstance(operations, dict):
            raise ApiError(400, f"The swagger's path '{raw_path}' needs operations.")
        for verb, operation in operations.items():
            routes.append(_swagger_route(path, str(verb), operation, ns))
    if not routes:
        raise ApiError(400, "The swagger has no operations.")
    return Api(base, str(title or base), routes)


def _swagger_route(path: str, verb: str, operation: Any, ns: str) -> Route:
    method = verb.lower()
    if method not in METHODS:
        raise ApiError(400, f"'{verb}' of '{path}' is not an operation.")
    target = operation.get("x-openwhisk") if isinstance(operation, dict) else None
    if not isinstance(target, dict) or not isinstance(target.get("action"), str):
        raise ApiError(400, f"{method.upper()} {path} needs an 'x-openwhisk' with its "
                            "'action'.")
    _strings(target, "x-openwhisk", ("namespace", "package", "url"))
    action_ns = target.get("namespace") or "_"
    package = target.get("package") or ""
    extension = str(target.get("url") or "").rsplit("/", 1)[-1].rpartition(".")[2]
    return Route(path, method, ns if action_ns == "_" else action_ns,
                 f"{package}/{target['action']}" if package else target["action"],
                 extension if extension in RESPONSE_TYPES else "json")


def _strings(doc: dict[str, Any], what: str, names: tuple[str, ...]) -> None:
    for name in names:
        if name in doc and doc[name] is not None and not isinstance(doc[name], str):
            raise ApiError(400, f"The {what}'s '{name}' must be a string.")


def _window(request: web.Request, apis: list[Api]) -> list[Api]:
    """``skip`` and ``limit`` (0: all), as the npm client sends them."""
    try:
        skip = max(0, int(request.query.get("skip", 0)))
        limit = max(0, int(request.query.get("limit", 0)))
    except ValueError:
        raise ApiError(400, "skip and limit must be whole numbers.") from None
    return apis[skip: skip + limit] if limit else apis[skip:]


def _selected(apis: dict[str, Api], request: web.Request) -> list[Api]:
    """The APIs (and, within them, the routes) the query names."""
    wanted = request.query.get("basepath")
    relpath, operation = request.query.get("relpath"), request.query.get("operation")
    chosen = []
    for api in apis.values():
        if wanted and wanted not in (api.base_path, api.name):
            continue
        routes = [r for r in api.routes
                  if (not relpath or r.path == relpath)
                  and (not operation or r.method == operation.lower())]
        if routes:
            chosen.append(Api(api.base_path, api.name, routes))
    return chosen


async def _get(request: web.Request, ns: str) -> web.Response:
    api_host = request.app[SETTINGS].api_host
    apis = _window(request, _selected(await _apis(request, ns), request))
    return json_response({"apis": [_entry(api, ns, api_host) for api in apis]})


async def _delete(request: web.Request, ns: str) -> web.Response:
    if not request.query.get("basepath"):
        raise ApiError(400, "Deleting routes needs a basepath.")
    apis = await _apis(request, ns)
    chosen = _selected(apis, request)
    if not chosen:
        raise ApiError(404, f"API '{request.query['basepath']}' does not exist.")
    for gone in chosen:
        api = apis[gone.base_path]
        api.routes = [r for r in api.routes if r not in gone.routes]
        await _save(request, ns, api)
    return json_response({})


async def serve_route(request: web.Request) -> web.StreamResponse:
    """A call of ``/api/<ns>/<base path>/<relative path>``: the route serving it runs its
    action as a web action; no route is 404."""
    ns, path = request.match_info["ns"], "/" + request.match_info["tail"]
    apis = await _apis(request, ns)
    method = request.method.lower()
    # The longest base path first: "/a/b" before "/a" for "/a/b/c".
    for api in sorted(apis.values(), key=lambda a: -len(a.base_path)):
        prefix = api.base_path.rstrip("/")
        if not (path == prefix or path.startswith(prefix + "/")):
            continue
        rest = path[len(prefix):] or "/"
        for route in api.routes:
            found = route.matches("get" if method == "head" else method, rest)
            if found is not None:
                package, _, name = route.action.rpartition("/")
                return await serve_web_action(
                    request, route.action_namespace, package or "default",
                    f"{name}.{route.response_type}", path_parameters=found)
    # As a route to an action that is not (or no longer) a web action answers: a caller
    # cannot tell which routes of a namespace exist.
    raise ApiError(404, NOT_FOUND)
