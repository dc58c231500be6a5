"""The gateway application: routes, start-up and shutdown, and the ``ft gateway`` process.

``build_app`` wires an aiohttp application over a store and a broker the caller owns;
``serve`` owns its own connections and runs until stopped; ``run`` is the process entry point
(uvloop, graceful on SIGINT/SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from aiohttp import web

from bus.broker import Broker
from bus.config import Settings
from bus.keys import REVOKED_CHANNEL
from bus.models import NamespaceAuth
from bus.process import run_process, stop_on_signals
from bus.store import ENTITY_CHANGED_CHANNEL, Store
from bus.tracing import Tracer
from gateway import (
    actions,
    activations,
    api_routes,
    feeds,
    invoke,
    invokers,
    observability,
    openapi,
    package_actions,
    packages,
    rules,
    triggers,
)
from gateway import web as web_actions
from gateway.action_cache import ActionCache
from gateway.activation_watch import ActivationWatch
from gateway.auth import Authenticator, auth_middleware, namespace
from gateway.auth_cache import AuthCache
from gateway.auth_failures import AuthFailureLimiter
from gateway.catalog import install_catalog
from gateway.cluster_metrics import ClusterView
from gateway.direct import DirectPath
from gateway.errors import COUNT_RESPONSE, request_context
from gateway.invalidations import InvalidationListener
from gateway.jsonio import json_response
from gateway.limits import get_limits
from gateway.metrics import GatewayMetrics
from gateway.publisher import ActivationPublisher
from gateway.replies import Waiters
from gateway.state import (
    ACTIONS,
    AUTHENTICATOR,
    BROKER,
    CLUSTER,
    DIRECT,
    GATEWAY_ID,
    GATEWAY_METRICS,
    INVALIDATIONS,
    LIMITS,
    PUBLISHER,
    SETTINGS,
    STORE,
    TRACER,
    WAITERS,
    WATCH,
)
from gateway.validation import MB, GatewayLimits
from runtimes.kinds import RUNTIMES

log = logging.getLogger(__name__)

BUILD = "funtainer-0.1.0"

API_INFO = {
    "description": "OpenWhisk API",
    "api_version": "1.0.0",
    "api_version_path": "v1",
    "build": BUILD,
    "buildno": "0.1.0",
    "swagger_paths": {"ui": "/docs", "api-docs": "/api-docs"},
}


def _root_info() -> dict[str, object]:
    families: dict[str, list[dict[str, object]]] = {}
    for runtime in RUNTIMES.values():
        families.setdefault(runtime.family, []).append(
            {"kind": runtime.kind, "default": runtime.default}
        )
    return {
        "description": "OpenWhisk",
        "api_paths": ["/api/v1"],
        "limits": {
            "min_action_duration": 100,
            "max_action_duration": 300_000,
            "min_action_memory": 128 * MB,
            "max_action_memory": 512 * MB,
            "min_action_logs": 0,
            "max_action_logs": 10 * MB,
        },
        "runtimes": families,
    }


async def root(request: web.Request) -> web.Response:
    return json_response(_root_info())


async def api_info(request: web.Request) -> web.Response:
    return json_response(API_INFO)


async def list_namespaces(request: web.Request) -> web.Response:
    return json_response([namespace(request)])


def _add_routes(app: web.Application) -> None:
    ns = "/api/v1/namespaces/{ns}"
    action = ns + "/actions/{name}"
    activation = ns + "/activations/{activation_id}"
    trigger = ns + "/triggers/{name}"
    rule = ns + "/rules/{name}"
    app.router.add_get("/", root)
    app.router.add_get("/api/v1", api_info)
    app.router.add_get("/invokers", invokers.list_invokers)
    app.router.add_get("/api/v1/", api_info)  # wsk clients ask with the trailing slash
    app.router.add_get(openapi.API_DOCS_PATH, openapi.api_docs)
    app.router.add_get("/api/v1/namespaces", list_namespaces)
    app.router.add_get(ns + "/limits", get_limits)
    app.router.add_get(ns + "/actions", actions.list_actions)
    app.router.add_put(action, actions.put_action)
    app.router.add_get(action, actions.get_action)
    app.router.add_delete(action, actions.delete_action)
    app.router.add_post(action, invoke.invoke_action)
    app.router.add_get(ns + "/activations", activations.list_activations)
    app.router.add_get(activation, activations.get_activation)
    app.router.add_get(activation + "/result", activations.get_result)
    app.router.add_get(activation + "/logs", activations.get_logs)
    app.router.add_get(ns + "/triggers", triggers.list_triggers)
    app.router.add_put(trigger, triggers.put_trigger)
    app.router.add_get(trigger, triggers.get_trigger)
    app.router.add_delete(trigger, triggers.delete_trigger)
    app.router.add_post(trigger, triggers.fire_trigger)
    app.router.add_get(ns + "/rules", rules.list_rules)
    app.router.add_put(rule, rules.put_rule)
    app.router.add_get(rule, rules.get_rule)
    app.router.add_delete(rule, rules.delete_rule)
    app.router.add_post(rule, rules.set_rule_state)
    # Public feed actions: no {ns} in the path, so any authenticated caller may invoke them.
    app.router.add_post(
        "/api/v1/namespaces/" + feeds.SYSTEM_NAMESPACE + "/actions/{package}/{name}",
        feeds.invoke_feed,
    )
    _add_package_routes(app, ns)
    observability.add_routes(app, ns)


def _add_package_routes(app: web.Application, ns: str) -> None:
    package = ns + "/packages/{name}"
    packaged_action = ns + "/actions/{pkg}/{name}"
    app.router.add_get(ns + "/packages", packages.list_packages)
    app.router.add_put(package, packages.put_package)
    app.router.add_get(package, packages.get_package_handler)
    app.router.add_delete(package, packages.delete_package)
    app.router.add_get(ns + "/actions/{pkg}/", package_actions.list_packaged_actions)
    app.router.add_put(packaged_action, package_actions.put_packaged_action)
    app.router.add_get(packaged_action, package_actions.get_packaged_action)
    app.router.add_delete(packaged_action, package_actions.delete_packaged_action)
    # POSTs to whisk.system's packages reach feeds.invoke_feed first (registered earlier),
    # which hands every action that is not a built-in feed on to the package invoke.
    app.router.add_post(packaged_action, package_actions.invoke_packaged_action)
    # API management is whisk.system's web actions in OpenWhisk: matched before them.
    for method in ("GET", "POST", "DELETE"):
        app.router.add_route(method, api_routes.MANAGEMENT, api_routes.manage)
    # Web actions: no authentication required, every method (the handler refuses others).
    app.router.add_route("*", "/api/v1/web/{ns}/{pkg}/{tail:.+}", web_actions.web_action)
    # API routes last: "/api/{ns}/..." must not shadow "/api/v1/...".
    app.router.add_route("*", api_routes.ROUTES, api_routes.serve_route)


async def ensure_guest(store: Store, settings: Settings) -> None:
    """Create the guest namespace's key unless that uuid already has one (never clobber an
    operator's key)."""
    if await store.get_auth(settings.guest_uuid) is not None:
        return
    await store.put_auth(
        NamespaceAuth(uuid=settings.guest_uuid, key=settings.guest_key, namespace="guest")
    )


async def _on_startup(app: web.Application) -> None:
    upgraded = await app[STORE].keys.upgrade_legacy()
    if upgraded:
        log.info("%d keys stored in clear by an earlier version are now hashed", upgraded)
    await ensure_guest(app[STORE], app[SETTINGS])
    app[STORE].watch_entities(app[ACTIONS].forget)
    await app[INVALIDATIONS].start()
    await install_catalog(app[STORE])
    await app[WAITERS].start()
    await app[WATCH].start()
    await app[CLUSTER].start()  # heartbeats too: the direct path routes by them
    log.info("gateway %s consuming replies on %s", app[GATEWAY_ID], app[WAITERS].queue_name)


async def _on_shutdown(app: web.Application) -> None:
    # Blocking requests answer 202 now rather than holding the shutdown for up to 60 s; their
    # activations go on and can be fetched by id.
    app[WAITERS].release_all()
    app[WATCH].release_all()
    app[CLUSTER].closing.set()
    if DIRECT in app:
        app[DIRECT].release_all()


async def _on_cleanup(app: web.Application) -> None:
    if DIRECT in app:
        await app[DIRECT].close()
    await app[INVALIDATIONS].close()
    app[STORE].unwatch_entities(app[ACTIONS].forget)
    await app[WAITERS].close()
    await app[WATCH].close()
    await app[CLUSTER].close()


def new_gateway_id() -> str:
    return f"gw-{uuid.uuid4().hex[:8]}"


def build_app(
    settings: Settings, store: Store, broker: Broker, *, limits: GatewayLimits | None = None,
    tracer: Tracer | None = None,
) -> web.Application:
    """The API application. Start it with aiohttp's ``AppRunner``; its startup declares this
    gateway's reply queue, so it needs a running loop and a connected broker."""
    limits = limits or GatewayLimits()
    gateway_id = new_gateway_id()
    auth_cache = AuthCache(ttl_s=settings.auth_cache_ttl_s)
    limiter = AuthFailureLimiter(store.redis, per_address=settings.auth_failures_per_address,
                                 per_uuid=settings.auth_failures_per_uuid)
    authenticator = Authenticator(store, auth_cache, limiter)
    app = web.Application(
        middlewares=[request_context, auth_middleware(authenticator)],
        client_max_size=limits.request_bytes,
    )
    app[SETTINGS] = settings
    app[STORE] = store
    app[BROKER] = broker
    app[PUBLISHER] = ActivationPublisher(broker)
    app[LIMITS] = limits
    app[AUTHENTICATOR] = authenticator
    actions = app[ACTIONS] = ActionCache(store, ttl_s=settings.action_cache_ttl_s)
    app[INVALIDATIONS] = InvalidationListener(
        store.redis, {REVOKED_CHANNEL: auth_cache.forget, ENTITY_CHANGED_CHANNEL: actions.forget},
        clear=[auth_cache.clear, actions.clear])
    app[GATEWAY_ID] = gateway_id
    app[WAITERS] = Waiters(broker, gateway_id)
    app[WATCH] = ActivationWatch(broker)
    cluster = app[CLUSTER] = ClusterView(broker, enabled=settings.metrics_enabled)
    gateway_metrics = app[GATEWAY_METRICS] = GatewayMetrics()
    app[TRACER] = tracer or Tracer.off("gateway")
    app[COUNT_RESPONSE] = gateway_metrics.count_response
    if settings.direct_path:
        direct = app[DIRECT] = DirectPath(settings.heartbeat_interval_s)
        cluster.beats.listen(direct.saw)
    _add_routes(app)
    app.on_startup.append(_on_startup)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run the gateway until ``stop`` is set (by default: until SIGINT or SIGTERM)."""
    if stop is None:
        stop = stop_on_signals()
    store = Store.for_settings(settings)
    broker = await Broker.connect(settings.amqp_url, name="ft-gateway",
                                  quorum=settings.quorum_queues)
    runner: web.AppRunner | None = None
    tracer = Tracer("gateway")
    try:
        app = build_app(settings, store, broker, tracer=tracer)
        # No access log: formatting a line per request costs as much as serving a GET. The
        # keep-alive timer also closes a connection whose request headers have not all
        # arrived that long after it opened or its last request: slowloris is cut off.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0,
                               keepalive_timeout=settings.gateway_read_timeout_s)
        await runner.setup()
        site = web.TCPSite(
            runner, settings.gateway_host, settings.gateway_port, backlog=1024,
            reuse_address=True,
        )
        await site.start()
        log.info("gateway %s listening on http://%s:%d", app[GATEWAY_ID],
                 settings.gateway_host, settings.gateway_port)
        await stop.wait()
        log.info("gateway stopping")
    finally:
        if runner is not None:
            await runner.cleanup()
        await broker.close()
        await store.close()
        tracer.shutdown()


def run() -> None:
    """``ft gateway``: serve with the environment's settings until SIGINT/SIGTERM."""
    run_process(serve)
