"""The tries of the cross-tenant suite, derived from the gateway's own route table, so a route
added later is tried too (or, if its placeholders are new, makes the suite fail until it is
taught them).

Each try is a pair of requests by tenant A: one naming something of tenant B that exists, one
naming the same kind of thing that does not exist. B's must be refused (403/404, or the
documented answer of the endpoint), and both answers must be identical apart from the names
they echo back."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.tenants.conftest import EXEC, World

DENIED = frozenset({403, 404})
# The built-in feed actions answer like an action: a refused trigger is the action's
# application error (502), the same text whether the trigger exists or not.
FEED_REFUSED = frozenset({502})
READ_METHODS = frozenset({"GET", "POST"})  # GET a public package's entity, or invoke its action
GLOBAL_ROUTES = ("/", "/api/v1", "/api/v1/", "/api/v1/api-docs", "/invokers",
                 "/api/v1/namespaces", "/dashboard", "/dashboard/static/{filename}")
# Routes for administrators only: A is refused as anyone would be who is not one.
ADMIN_ROUTES = ("/metrics",)
_DASHBOARD_EVENTS = "/api/v1/namespaces/{ns}/dashboard/events"


@dataclass
class Try:
    label: str
    method: str
    existing: str  # names B's entity
    missing: str  # names nothing
    body: Any = None
    missing_body: Any = None
    names: tuple[str, ...] = ()  # what differs between the two, blanked before comparing
    denied: frozenset[int] = DENIED
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Listing:
    """A 200 answer to A whose body must hold nothing of B's (B's public package aside)."""

    label: str
    method: str
    path: str


@dataclass
class PublicRead:
    """A read of B's published package: must work (2xx) and show none of B's secrets."""

    label: str
    method: str
    path: str
    body: Any = None


Probe = Try | Listing | PublicRead


def routes(app: web.Application) -> list[tuple[str, str]]:
    """(method, canonical path) of every route; HEAD and OPTIONS answer like GET or answer the
    CORS preflight without looking at anything."""
    found = []
    for resource in app.router.resources():
        for route in resource:
            if route.method in ("HEAD", "OPTIONS"):
                continue
            methods = ["GET", "POST"] if route.method == "*" else [route.method]
            found.extend((method, resource.canonical) for method in methods)
    return sorted(set(found))


def _body(method: str, collection: str) -> Any:
    if method == "PUT":
        return {"actions": {"exec": EXEC}, "rules": {"trigger": "/_/a-trig",
                                                     "action": "/_/a-act"}}.get(collection, {})
    if method == "POST" and collection == "rules":
        return {"status": "inactive"}
    return {} if method == "POST" else None


_ENTITY = re.compile(r"^/api/v1/namespaces/\{ns\}/(actions|triggers|rules|packages)/\{name\}$")
_PACKAGED = re.compile(r"^/api/v1/namespaces/\{ns\}/actions/\{pkg\}/\{name\}$")
_PACKAGE_LIST = re.compile(r"^/api/v1/namespaces/\{ns\}/actions/\{pkg\}/$")
_ACTIVATION = re.compile(r"^/api/v1/namespaces/\{ns\}/activations/\{activation_id\}(/\w+)?$")
_COLLECTION = re.compile(r"^/api/v1/namespaces/\{ns\}/(\w+)$")
_FEEDS = re.compile(r"^/api/v1/namespaces/whisk\.system/actions/\{package\}/\{name\}$")
_WEB = re.compile(r"^/api/v1/web/\{ns\}/\{pkg\}/\{tail\}$")
_API_MANAGEMENT = "/api/v1/web/whisk.system/apimgmt/{call}"
_API_ROUTES = "/api/{ns}/{tail}"

_B_NAMES = {"actions": "b-act", "triggers": "b-trig", "rules": "b-rule", "packages": "b-priv"}


def tries_for_route(method: str, template: str, world: World, ghost: str) -> list[Probe]:
    """``ghost`` is a name nothing has, used for missing entities and a missing namespace."""
    b = world.b.namespace
    missing_id = secrets.token_hex(16)
    out: list[Probe] = []
    label = f"{method} {template}"

    def pair(ns: str, existing: str, missing: str, names: tuple[str, ...], body: Any = None,
             suffix: str = "") -> None:
        out.append(Try(f"{label} [{ns}{suffix}]", method, existing, missing, body, body, names))

    def everywhere(fill: Any, values: tuple[str, ...], ghosts: tuple[str, ...],
                   collection: str, public: bool = False) -> None:
        """``/namespaces/B/...`` against a missing entity of B and against a missing
        namespace, and ``/namespaces/_/...`` (A's own) with B's names."""
        body = _body(method, collection)
        existing = fill(b, *values)
        if public:
            out.append(PublicRead(f"{label} [{b}, published]", method, existing, body))
        else:
            pair(b, existing, fill(b, *ghosts), (*values, *ghosts), body)
            pair(b, existing, fill(ghost, *values), (b, ghost), body, " vs missing namespace")
        if method != "PUT":  # a PUT under _ writes A's own namespace: not about B
            pair("_", fill("_", *values), fill("_", *ghosts), (*values, *ghosts), body)

    if template in GLOBAL_ROUTES:
        path = template.replace("{filename}", "dashboard.js")
        return [Listing(label, method, path)]
    if template in ADMIN_ROUTES:
        return [Try(label, method, template, template, denied=frozenset({403}))]
    if template == _DASHBOARD_EVENTS:
        # B's stream is refused before it starts; A's own never ends (a stream), and what it
        # sends is the snapshot route's, which is probed as a listing of A's namespace.
        fill = "/api/v1/namespaces/{}/dashboard/events".format
        pair(b, fill(b), fill(ghost), (b, ghost))
        return out
    if m := _ENTITY.match(template):
        collection = m.group(1)
        fill = f"/api/v1/namespaces/{{}}/{collection}/{{}}".format
        everywhere(fill, (_B_NAMES[collection],), (ghost,), collection)
        if collection == "packages":
            everywhere(fill, ("b-pub",), (ghost,), collection, public=method == "GET")
        return out
    if _PACKAGED.match(template):
        fill = "/api/v1/namespaces/{}/actions/{}/{}".format
        everywhere(fill, ("b-priv", "inner"), (ghost, "inner"), "actions")
        everywhere(fill, ("b-pub", "pubact"), (ghost, "pubact"), "actions",
                   public=method in READ_METHODS)
        return out
    if _PACKAGE_LIST.match(template):
        fill = "/api/v1/namespaces/{}/actions/{}/".format
        everywhere(fill, ("b-priv",), (ghost,), "actions")
        everywhere(fill, ("b-pub",), (ghost,), "actions", public=True)
        return out
    if m := _ACTIVATION.match(template):
        fill = ("/api/v1/namespaces/{}/activations/{}" + (m.group(1) or "")).format
        for activation_id in world.b_activations:
            everywhere(fill, (activation_id,), (missing_id,), "activations")
        return out
    if m := _COLLECTION.match(template):
        collection = m.group(1)
        path = f"/api/v1/namespaces/{{}}/{collection}".format
        if collection == "packages":  # B's published packages are listed to anyone
            out.append(Listing(f"{label} [{b}, published only]", method, path(b)))
        else:
            pair(b, path(b), path(ghost), (b, ghost), _body(method, collection))
        out.append(Listing(f"{label} [_]", method, path("_")))
        return out
    if _FEEDS.match(template):
        path = "/api/v1/namespaces/whisk.system/actions/alarms/interval"
        for trigger in (f"/{b}/b-trig", "b-trig"):
            ghost_trigger = trigger.replace("b-trig", ghost)
            out.append(Try(f"{label} [triggerName {trigger}]", method, path, path,
                           {"lifecycleEvent": "READ", "triggerName": trigger},
                           {"lifecycleEvent": "READ", "triggerName": ghost_trigger},
                           ("b-trig", ghost), FEED_REFUSED, {"blocking": "true"}))
        return out
    if _WEB.match(template):
        fill = "/api/v1/web/{}/{}/{}".format
        for values, ghosts in ((("default", "b-act"), ("default", ghost)),
                               (("b-priv", "inner"), (ghost, "inner")),
                               (("b-pub", "pubact"), ("b-pub", ghost))):
            pair(b, fill(b, *values), fill(b, *ghosts), (*values, *ghosts))
            pair(b, fill(b, *values), fill(ghost, *values), (b, ghost), suffix=" vs missing ns")
        return out
    if template == _API_MANAGEMENT:
        # A's calls only ever see A's own APIs: B's base path is as unknown as a ghost's.
        mgmt = "/api/v1/web/whisk.system/apimgmt/{}.http?basepath=/{}".format
        if method == "GET":
            out.append(Try(label, method, mgmt("getApi", "b-api"), mgmt("getApi", ghost),
                           names=("b-api", ghost), denied=frozenset({200})))
        elif method == "DELETE":
            out.append(Try(label, method, mgmt("deleteApi", "b-api"), mgmt("deleteApi", ghost),
                           names=("b-api", ghost), denied=frozenset({404})))
        else:  # a route of A's own to B's action: B's web actions are anyone's to call
            path = "/api/v1/web/whisk.system/apimgmt/createApi.http"
            route = {"namespace": "_", "gatewayBasePath": "/a-api", "gatewayPath": "/y",
                     "gatewayMethod": "GET"}
            out.append(Try(label, method, path, path,
                           {"apidoc": {**route, "action": {"name": "b-act", "namespace": b}}},
                           {"apidoc": {**route, "action": {"name": ghost, "namespace": b}}},
                           names=("b-act", ghost), denied=frozenset({200})))
        return out
    if template == _API_ROUTES:
        fill = "/api/{}/{}/x".format
        pair(b, fill(b, "b-api"), fill(b, ghost), ("b-api", ghost))
        pair(b, fill(b, "b-api"), fill(ghost, "b-api"), (b, ghost), suffix=" vs missing ns")
        return out
    raise AssertionError(f"route {label} has placeholders this suite does not know yet")


def reference_tries(world: World, ghost: str) -> list[Try]:
    """Writes in A's own namespace whose body names B's entities."""
    b = world.b.namespace
    ns = "/api/v1/namespaces/_"
    rule = f"{ns}/rules/a-rule"
    out = [
        Try("rule on B's trigger", "PUT", rule, rule,
            {"trigger": f"/{b}/b-trig", "action": "/_/a-act"},
            {"trigger": f"/{b}/{ghost}", "action": "/_/a-act"}, ("b-trig", ghost)),
        Try("rule to B's action", "PUT", rule, rule,
            {"trigger": "/_/a-trig", "action": f"/{b}/b-act"},
            {"trigger": "/_/a-trig", "action": f"/{b}/{ghost}"}, ("b-act", ghost)),
        Try("rule to B's private package action", "PUT", rule, rule,
            {"trigger": "/_/a-trig", "action": f"/{b}/b-priv/inner"},
            {"trigger": "/_/a-trig", "action": f"/{b}/{ghost}/inner"}, ("b-priv", ghost)),
        Try("binding to B's private package", "PUT", f"{ns}/packages/a-bind",
            f"{ns}/packages/a-bind", {"binding": {"namespace": b, "name": "b-priv"}},
            {"binding": {"namespace": b, "name": ghost}}, ("b-priv", ghost)),
    ]
    for component, missing in ((f"/{b}/b-act", f"/{b}/{ghost}"),
                               (f"/{b}/b-priv/inner", f"/{b}/{ghost}/inner")):
        sequence = f"{ns}/actions/a-seq"
        out.append(Try(f"sequence of {component}", "PUT", sequence, sequence,
                       {"exec": {"kind": "sequence", "components": [component]}},
                       {"exec": {"kind": "sequence", "components": [missing]}},
                       (component, missing)))
    return out
