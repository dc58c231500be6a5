"""The throttles of ``bus.throttling`` as the gateway's 429 answers."""

from __future__ import annotations

from aiohttp import web

from bus import throttling
from bus.models import ActionDoc
from gateway.errors import ApiError
from gateway.state import GATEWAY_METRICS, SETTINGS, STORE


async def admit_invocation(app: web.Application, namespace: str, doc: ActionDoc,
                           activation_id: str) -> None:
    try:
        await throttling.admit_invocation(app[STORE], app[SETTINGS], namespace, doc,
                                          activation_id)
    except throttling.Throttled as exc:
        app[GATEWAY_METRICS].throttled(namespace, exc.limit)
        raise ApiError(429, str(exc)) from None


async def admit_fire(app: web.Application, namespace: str) -> None:
    try:
        await throttling.admit_fire(app[STORE], app[SETTINGS], namespace)
    except throttling.Throttled as exc:
        app[GATEWAY_METRICS].fires_limited.labels(namespace).inc()
        raise ApiError(429, str(exc)) from None
