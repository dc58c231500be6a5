"""What an operator looks at: ``GET /metrics`` and the dashboard.

``/metrics``: this gateway's own metrics, the cluster's activation metrics
(``gateway.cluster_metrics``) and the process's, in Prometheus text. They name namespaces and
actions, so the endpoint wants an administrator's key (HTTP Basic, as Prometheus'
``basic_auth`` sends it).

``/dashboard``: a static page from the package (no CDN; it works offline). It reads the key
from the URL's fragment, which browsers never send, or from its login form, and asks
``/api/v1/namespaces/_/dashboard/events`` with it: a stream of server-sent events, one
snapshot a second, of the caller's namespace (an administrator's: every namespace)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from bus.broker import Broker
from bus.events import FeedDoc
from bus.models import ActivationRecord
from bus.samples import STATUS_LABELS
from bus.store import Store
from bus.telemetry import metrics_response
from gateway.admins import is_admin, require_admin
from gateway.auth import identity
from gateway.invokers import invoker_states
from gateway.jsonio import json_response
from gateway.state import BROKER, CLUSTER, GATEWAY_METRICS, STORE

STATIC = Path(__file__).parent / "dashboard"
ASSETS = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
EVENTS_PATH = "/dashboard/events"
SNAPSHOT_INTERVAL_S = 1.0
LATEST = 25
LOG_LINES = 30
FORGET_INVOKER_AFTER_MS = 300_000


async def metrics(request: web.Request) -> web.Response:
    await require_admin(request)
    app = request.app
    return metrics_response(app[GATEWAY_METRICS].registry, app[CLUSTER].registry)


async def dashboard_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def dashboard_asset(request: web.Request) -> web.FileResponse:
    """The page's script and style sheet: these two files by name, nothing else."""
    name = request.match_info["filename"]
    if name not in ASSETS:
        raise web.HTTPNotFound()
    return web.FileResponse(STATIC / name, headers={"Content-Type": ASSETS[name],
                                                    "Cache-Control": "no-cache"})


def add_routes(app: web.Application, ns: str) -> None:
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/dashboard", dashboard_page)
    app.router.add_get("/dashboard/static/{filename}", dashboard_asset)
    app.router.add_get(ns + "/dashboard", dashboard_snapshot)
    app.router.add_get(ns + EVENTS_PATH, dashboard_events)


# -- the snapshot --------------------------------------------------------------------------


def _latest_entry(record: ActivationRecord) -> dict[str, Any]:
    return {
        "activationId": record.activationId,
        "namespace": record.namespace,
        "name": record.name,
        "start": record.start,
        "duration": record.duration,
        "status": STATUS_LABELS[record.response.status_code],
        "cold": record.annotation("initTime") is not None,
        "logs": record.logs[-LOG_LINES:],
    }


async def _latest(store: Store, namespaces: list[str]) -> list[dict[str, Any]]:
    lists = await asyncio.gather(*(store.list_records(ns, limit=LATEST) for ns in namespaces))
    records = sorted((r for found in lists for r in found), key=lambda r: r.start, reverse=True)
    return [_latest_entry(r) for r in records[:LATEST]]


async def _feeds(request: web.Request, namespaces: list[str] | None) -> list[dict[str, Any]]:
    store, broker = request.app[STORE], request.app[BROKER]
    keys = [k for k in await store.feed_keys()
            if namespaces is None or k.split("/", 1)[0] in namespaces]
    docs = [doc for doc in await asyncio.gather(*(store.get_feed(k) for k in keys)) if doc]
    return [await _feed_entry(broker, doc) for doc in docs]


async def _feed_entry(broker: Broker, doc: FeedDoc) -> dict[str, Any]:
    entry: dict[str, Any] = {"namespace": doc.namespace, "trigger": doc.trigger,
                             "kind": doc.kind, "queue": doc.queue}
    if doc.kind == "queue" and doc.queue:
        for field, queue in (("waiting", doc.queue), ("dead_letters", doc.dead_letters)):
            try:
                entry[field] = await broker.backlog(queue)
            except Exception:  # not declared (yet): nothing waits there
                entry[field] = None
    return entry


def _invokers(request: web.Request, states: dict[str, str]) -> list[dict[str, Any]]:
    beats = request.app[CLUSTER].beats.recent(FORGET_INVOKER_AFTER_MS)
    out = []
    for invoker_id in sorted(set(states) | set(beats)):
        beat = beats.get(invoker_id)
        entry: dict[str, Any] = {"id": invoker_id, "state": states.get(invoker_id, "unknown")}
        if beat is not None:
            entry |= {"user_memory": beat.user_memory, "free_memory": beat.free_memory,
                      "busy": beat.busy, "queued": beat.queued, "containers": beat.containers,
                      "prewarmed": beat.prewarmed}
        out.append(entry)
    return out


async def snapshot(request: web.Request) -> dict[str, Any]:
    caller = identity(request)
    admin = is_admin(request, caller)
    cluster = request.app[CLUSTER]
    namespaces = None if admin else [caller.namespace]
    now = time.time()
    listed = cluster.activity.namespaces() if admin else [caller.namespace]
    states, latest, feeds = await asyncio.gather(
        invoker_states(request.app[STORE]), _latest(request.app[STORE], listed),
        _feeds(request, namespaces))
    return {
        "namespace": caller.namespace,
        "admin": admin,
        "at": int(now * 1000),
        "invokers": _invokers(request, states),
        "series": cluster.activity.series(namespaces, int(now)),
        "latest": latest,
        "feeds": feeds,
    }


async def dashboard_snapshot(request: web.Request) -> web.Response:
    return json_response(await snapshot(request))


async def dashboard_events(request: web.Request) -> web.StreamResponse:
    """A snapshot every second as server-sent events, until the client goes or the gateway
    stops."""
    closing = request.app[CLUSTER].closing
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        while not closing.is_set():
            data = json.dumps(await snapshot(request), separators=(",", ":"))
            await response.write(f"event: snapshot\ndata: {data}\n\n".encode())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing.wait(), SNAPSHOT_INTERVAL_S)
    return response
