"""``GET /invokers`` like OpenWhisk's controller: ``{"<invoker-id>": "up", ...}``.

The initializers own invoker health; each writes its view to Redis every second. An entry no
initializer refreshed lately belongs to an invoker nobody sees any more: it is down."""

from __future__ import annotations

import json

from aiohttp import web

from bus.ids import now_ms
from bus.store import Store
from gateway.jsonio import json_response
from gateway.state import STORE

INVOKERS_KEY = "ft:invokers"  # written by initializer.supervision
STALE_MS = 10_000


async def invoker_states(store: Store) -> dict[str, str]:
    raw = await store.redis.hgetall(INVOKERS_KEY)
    now = now_ms()
    states: dict[str, str] = {}
    for key, value in sorted(raw.items()):
        entry = json.loads(value)
        states[key.decode()] = entry["state"] if now - entry["at"] <= STALE_MS else "down"
    return states


async def list_invokers(request: web.Request) -> web.Response:
    return json_response(await invoker_states(request.app[STORE]))
