"""The built-in feed actions ``/whisk.system/rabbitmq/queue``, ``/whisk.system/alarms/alarm``
and ``/whisk.system/alarms/interval``, run in the gateway without a container.

Clients manage a feed the OpenWhisk way: they invoke the feed action (blocking) with
``lifecycleEvent`` CREATE, READ, UPDATE or DELETE, ``triggerName`` and ``authKey`` plus the
feed's own parameters. The feed document goes to Redis, and a ``FeedChanged`` on ``ft.feeds``
tells initializers to re-read it. Each call is answered like a blocking invoke, with a real
activation record; a bad request is the action's application error (502), not an API error.
"""

from __future__ import annotations

import logging
from typing import Any

import aiormq
from aiohttp import web

from bus.events import FEEDS_EXCHANGE, FeedChanged, FeedDoc, FeedKind, TriggerDoc
from bus.ids import new_activation_id, now_ms
from bus.models import ActivationRecord, ActivationResponse, KeyValue, StatusCode
from bus.queues import ensure_queue
from bus.store import Store
from gateway.auth import identity
from gateway.bodies import read_json
from gateway.errors import UNAVAILABLE, ApiError, malformed
from gateway.feed_params import FEED_ACTIONS, FeedError, build_feed
from gateway.invoke import ACTIVATION_ID_HEADER, answer, timeout_param
from gateway.jsonio import json_response
from gateway.package_actions import invoke_in_package
from gateway.state import BROKER, LIMITS, STORE
from gateway.trigger_docs import TRIGGERS
from gateway.validation import bool_param, is_entity_name

log = logging.getLogger(__name__)

SYSTEM_NAMESPACE = "whisk.system"
BUILTIN_KIND = "builtin"
_LIFECYCLE_EVENTS = ("CREATE", "READ", "UPDATE", "DELETE")
# Arguments about the call itself, never stored: authKey is a secret.
_CALL_ARGUMENTS = ("lifecycleEvent", "triggerName", "authKey")


async def publish_feed_change(app: web.Application, key: str, deleted: bool = False) -> None:
    """Confirmed, but not mandatory: with no initializer running nobody is bound to the
    fanout, and the feed in Redis is read when one starts."""
    try:
        await app[BROKER].publish(
            FeedChanged(key=key, deleted=deleted), routing_key="", exchange=FEEDS_EXCHANGE,
            mandatory=False,
        )
    except Exception as exc:
        log.warning("publish of the change to feed %s failed: %s", key, exc)
        raise ApiError(503, UNAVAILABLE) from exc


def _trigger_name(value: Any, ns: str) -> str:
    """``/ns/name`` (``_`` for the caller's namespace) or ``name``; only the caller's own."""
    if not isinstance(value, str) or not value:
        raise FeedError("'triggerName' is required: the trigger as /namespace/name")
    segments = value.removeprefix("/").split("/")
    if len(segments) == 1:
        segments = [ns, *segments]
    if len(segments) != 2 or not all(is_entity_name(s) for s in segments):
        raise FeedError(f"'triggerName' {value} is not a valid trigger name /namespace/name")
    if segments[0] not in ("_", ns):
        raise FeedError(f"trigger {value} is not in your namespace '{ns}'")
    return segments[1]


async def _existing_feed(store: Store, key: str, kind: FeedKind) -> FeedDoc:
    feed = await store.get_feed(key)
    if feed is None or feed.kind != kind:
        raise FeedError(f"trigger /{key} has no {kind} feed")
    return feed


async def _declare_queues(app: web.Application, feed: FeedDoc) -> None:
    """A queue feed's queues exist once its creation is answered: a message published right
    after would otherwise be dropped as unroutable before an initializer starts the feed."""
    if feed.queue is None:
        return
    connection = app[BROKER].connection
    try:
        await ensure_queue(connection, feed.queue)
        await ensure_queue(connection, feed.dead_letters)
    except aiormq.exceptions.AMQPError as exc:  # refused by the broker: the name, say
        raise FeedError(f"queue '{feed.queue}' cannot be used: {exc}") from exc
    except Exception as exc:
        raise ApiError(503, UNAVAILABLE) from exc


async def _lifecycle(app: web.Application, ns: str, kind: FeedKind, args: dict[str, Any]) -> Any:
    """Carry out one lifecycle event; the activation's result."""
    event = args.get("lifecycleEvent")
    event = event.upper() if isinstance(event, str) else event
    if event not in _LIFECYCLE_EVENTS:
        raise FeedError(f"'lifecycleEvent' must be one of {', '.join(_LIFECYCLE_EVENTS)}")
    trigger = _trigger_name(args.get("triggerName"), ns)
    key = f"{ns}/{trigger}"
    params = {k: v for k, v in args.items() if k not in _CALL_ARGUMENTS}
    store = app[STORE]
    # DELETE may clean up after a trigger that is already gone.
    if event != "DELETE" and await store.get_entity(TRIGGERS, ns, trigger, TriggerDoc) is None:
        raise FeedError(f"trigger /{key} does not exist")

    if event == "CREATE":
        feed = build_feed(kind, ns, trigger, params, now_ms())
        await _declare_queues(app, feed)
        await store.put_feed(feed)
        await publish_feed_change(app, key)
        return {"status": "success"}
    feed = await _existing_feed(store, key, kind)
    if event == "READ":
        active = feed.stop_date is None or feed.stop_date > now_ms()
        return {"config": feed.params, "status": {"active": active, "dateChanged": feed.created}}
    if event == "UPDATE":
        merged = {**feed.params, **params}
        feed = build_feed(kind, ns, trigger, merged, now_ms())
        await _declare_queues(app, feed)
        await store.put_feed(feed)
        await publish_feed_change(app, key)
        return {"status": "success"}
    await store.delete_feed(key)
    await publish_feed_change(app, key, deleted=True)
    return {"status": "success"}


async def invoke_feed(request: web.Request) -> web.Response:
    """``POST /api/v1/namespaces/whisk.system/actions/{package}/{name}``: public to every
    authenticated caller; other actions of whisk.system's packages (the catalog) are invoked
    like any packaged action."""
    app = request.app
    package, name = request.match_info["package"], request.match_info["name"]
    kind = FEED_ACTIONS.get((package, name))
    if kind is None:
        return await invoke_in_package(request, SYSTEM_NAMESPACE, package, name)
    ns = identity(request).namespace
    blocking = bool_param(request, "blocking")
    result_only = bool_param(request, "result")
    timeout_param(request)  # validated like any invoke; the work is done well within it
    args = await read_json(request, app[LIMITS].payload_bytes)
    if args is not None and not isinstance(args, dict):
        raise malformed("Object expected")

    start = now_ms()
    try:
        result = await _lifecycle(app, ns, kind, args or {})
        response = ActivationResponse(status_code=StatusCode.SUCCESS, result=result)
    except FeedError as exc:
        response = ActivationResponse(
            status_code=StatusCode.APPLICATION_ERROR, result={"error": str(exc)}
        )
    activation_id = new_activation_id()
    record = ActivationRecord(
        namespace=ns, name=name, version="0.0.1", subject=ns, activationId=activation_id,
        start=start, end=now_ms(), response=response,
        annotations=[
            KeyValue(key="path", value=f"{SYSTEM_NAMESPACE}/{package}/{name}"),
            KeyValue(key="kind", value=BUILTIN_KIND),
        ],
    )
    await app[STORE].write_record(record)
    headers = {ACTIVATION_ID_HEADER: activation_id}
    if not blocking:
        return json_response({"activationId": activation_id}, status=202, headers=headers)
    return answer(record, result_only, headers)
