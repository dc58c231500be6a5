"""``/api/v1/namespaces/{ns}/triggers[/{name}]``: create/update, get, delete, list, and fire
(``POST``).

A fire is only accepted here: it is published as a ``TriggerFire`` on ``ft.events`` (routing
key ``<namespace>.<trigger>``) and the initializer fans it out to the trigger's active rules
and writes the trigger's activation record. As with invokes, the activation id is promised
(202) only after the broker confirmed the publish.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bus.broker import EVENTS
from bus.events import TriggerDoc, TriggerFire
from bus.ids import new_activation_id, now_ms
from gateway.auth import identity, namespace
from gateway.bodies import read_json, read_object
from gateway.entities import list_response, not_found, refuse_overwrite, store_document
from gateway.errors import NOT_FOUND, UNAVAILABLE, ApiError, malformed
from gateway.feeds import publish_feed_change
from gateway.invoke import ACTIVATION_ID_HEADER
from gateway.jsonio import json_response
from gateway.state import BROKER, LIMITS, STORE
from gateway.throttles import admit_fire
from gateway.trigger_docs import (
    TRIGGERS,
    created_trigger,
    has_active_rule,
    parse_trigger_put,
    trigger_json,
    trigger_summary,
    updated_trigger,
)
from gateway.validation import bool_param, check_entity_name, request_headers

log = logging.getLogger(__name__)


async def put_trigger(request: web.Request) -> web.Response:
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    overwrite = bool_param(request, "overwrite")
    limits = request.app[LIMITS]
    put = parse_trigger_put(await read_object(request, limits.request_bytes), limits)

    existing = await request.app[STORE].get_entity(TRIGGERS, ns, name, TriggerDoc)
    refuse_overwrite(existing, overwrite)
    updated = now_ms()
    if existing is None:
        doc = created_trigger(ns, name, put, updated)
    else:
        doc = updated_trigger(existing, put, updated)
    # A rule linked meanwhile changed the document read above: 409, never a lost link.
    await store_document(request, TRIGGERS, ns, name, doc, updated, replaces=existing)
    return json_response(trigger_json(doc))


async def get_trigger(request: web.Request) -> web.Response:
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    doc = await request.app[STORE].get_entity(TRIGGERS, ns, name, TriggerDoc)
    if doc is None:
        raise await not_found(request, TRIGGERS, ns, name)
    return json_response(trigger_json(doc))


async def delete_trigger(request: web.Request) -> web.Response:
    """Rules of the trigger stay (now inactive). A feed left configured is removed too: clients
    normally delete it first, and an orphan would keep firing at a missing trigger."""
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    store = request.app[STORE]
    doc = await store.delete_entity(TRIGGERS, ns, name, TriggerDoc)
    if doc is None:
        raise await not_found(request, TRIGGERS, ns, name)
    key = f"{ns}/{name}"
    if await store.delete_feed(key) is not None:
        try:
            await publish_feed_change(request.app, key, deleted=True)
        except ApiError:
            # The trigger is gone either way; initializers drop the feed when they re-read.
            log.warning("feed %s removed without notifying initializers", key)
    return json_response(trigger_json(doc))


async def list_triggers(request: web.Request) -> web.Response:
    return await list_response(request, TRIGGERS, TriggerDoc, trigger_summary)


async def fire_trigger(request: web.Request) -> web.Response:
    app = request.app
    caller = identity(request)
    name = check_entity_name(request.match_info["name"])
    payload = await read_json(request, app[LIMITS].payload_bytes)
    if payload is not None and not isinstance(payload, dict):
        raise malformed("Object expected")

    doc = await app[STORE].get_entity(TRIGGERS, caller.namespace, name, TriggerDoc)
    if doc is None:
        raise ApiError(404, NOT_FOUND)
    # Counted like OpenWhisk's entitlement check: every fire, even one that runs nothing.
    await admit_fire(app, caller.namespace)
    if not has_active_rule(doc):
        # OpenWhisk answers 204 and keeps no activation record when nothing would run.
        return web.Response(status=204)

    activation_id = new_activation_id()
    fire = TriggerFire(
        activation_id=activation_id,
        namespace=caller.namespace,
        trigger=name,
        subject=caller.namespace,
        payload=payload or {},
        # Forwarded to actions as __ow_headers; the caller's credentials never are.
        headers=request_headers(request, drop=frozenset({"authorization"})),
        fired_at=now_ms(),
    )
    try:
        await app[BROKER].publish(
            fire, exchange=EVENTS, routing_key=f"{caller.namespace}.{name}",
            message_id=activation_id,
        )
    except Exception as exc:
        log.warning("publish of fire %s failed: %s", activation_id, exc)
        raise ApiError(503, UNAVAILABLE) from exc
    return json_response(
        {"activationId": activation_id}, status=202,
        headers={ACTIVATION_ID_HEADER: activation_id},
    )
