"""Every process's own Prometheus metrics: a registry per process (``prometheus_client``) with
the process collector's CPU and memory, and the small HTTP server that exposes it.

Each service builds its metrics in the registry it is given rather than the library's global
one, so tests may run several services in one interpreter. The server runs on the process's
event loop: collectors that read a service's state (the pool, the invoker registry) are then
never called while that state changes under them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from bus.config import Settings

__all__ = ["exposition", "metrics_response", "new_registry", "serve_metrics"]

# Counters and histograms without their *_created series: half the exposition, and nothing
# OpenWhisk's dashboards read.
disable_created_metrics()


def new_registry() -> CollectorRegistry:
    """A registry with the process's own CPU, memory, file descriptors and GC figures."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def exposition(registries: Iterable[CollectorRegistry]) -> bytes:
    return b"".join(generate_latest(registry) for registry in registries)


def metrics_response(*registries: CollectorRegistry) -> web.Response:
    response = web.Response(body=exposition(registries))
    # The classic text format, which generate_latest writes and every Prometheus reads.
    response.headers["Content-Type"] = CONTENT_TYPE_PLAIN_0_0_4
    return response


@asynccontextmanager
async def serve_metrics(settings: Settings, registry: CollectorRegistry) -> AsyncIterator[None]:
    """``GET /metrics`` on ``settings.metrics_port`` while the block runs (nothing if 0)."""
    if not settings.metrics_enabled or not settings.metrics_port:
        yield
        return

    async def metrics(request: web.Request) -> web.Response:
        return metrics_response(registry)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.metrics_host, settings.metrics_port,
                           reuse_address=True)
        await site.start()
        yield
    finally:
        await runner.cleanup()
