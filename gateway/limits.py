"""``GET /api/v1/namespaces/{ns}/limits``: OpenWhisk's ``UserLimits`` view (``ctl/Limits.scala``)
with the namespace's own throttles over the platform defaults."""

from __future__ import annotations

from aiohttp import web

from gateway.auth import namespace
from gateway.jsonio import json_response
from gateway.state import SETTINGS, STORE

# Per-action bounds (reference §2.3): memory and logs in MB, timeouts in ms.
_ACTION_LIMITS = {
    "minActionMemory": 128,
    "maxActionMemory": 512,
    "minActionLogs": 0,
    "maxActionLogs": 10,
    "minActionTimeout": 100,
    "maxActionTimeout": 300_000,
    "minActionConcurrency": 1,
    "maxActionConcurrency": 1,
    "maxParameterSize": "1 MB",  # a ByteSize: OpenWhisk serializes it as a string
}


async def get_limits(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    own = await request.app[STORE].get_limits(namespace(request))
    concurrent = _or(own.concurrentInvocations, settings.concurrent_invocations)
    return json_response({
        "invocationsPerMinute": _or(own.invocationsPerMinute, settings.invocations_per_minute),
        "concurrentInvocations": concurrent,
        "firesPerMinute": _or(own.firesPerMinute, settings.fires_per_minute),
        **_ACTION_LIMITS,
        # Containers one action may use: bounded by the namespace's concurrency.
        "maxActionInstances": concurrent,
    })


def _or(own: int | None, default: int) -> int:
    return default if own is None else own
