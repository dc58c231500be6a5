"""``POST /api/v1/namespaces/{ns}/actions/{name}``: publish an ``ActivationRequest`` and, when
blocking, wait for its ``ActivationDone`` on this gateway's reply queue.

Nothing is promised before the broker confirmed the publish: only then is the user told the
activation id (202), and only a confirmed activation is waited for. No polling: the waiter is
resolved by the reply consumer; one record read happens only when the wait expired, in case
the reply was lost while the record was written.

A caller may name its request with an ``Idempotency-Key`` header. Retrying with the same key
(after its gateway died mid-wait, say: it never saw the activation id) gets the same
activation: its record if there is one, else the request is published again under the same
id, which the first-write-wins record makes harmless.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bus.ids import new_activation_id
from bus.models import ActionDoc, ActivationRecord, ActivationRequest, StatusCode
from bus.requests import ParametersNotAllowed, build_payload, build_request
from bus.tracing import new_traceparent, valid_traceparent
from gateway.auth import identity
from gateway.bodies import read_json
from gateway.direct import Miss
from gateway.errors import (
    NOT_FOUND,
    PARAMETERS_NOT_ALLOWED,
    UNAVAILABLE,
    ApiError,
    malformed,
    transaction_id,
)
from gateway.jsonio import json_response
from gateway.replies import ReplyFuture
from gateway.state import (
    ACTIONS,
    DIRECT,
    GATEWAY_METRICS,
    LIMITS,
    PUBLISHER,
    SETTINGS,
    STORE,
    TRACER,
    WAITERS,
)
from gateway.throttles import admit_invocation
from gateway.validation import bool_param, check_entity_name

log = logging.getLogger(__name__)

ACTIVATION_ID_HEADER = "x-openwhisk-activation-id"
IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 255
MAX_BLOCKING_TIMEOUT_MS = 60_000  # controller.activation.max-wait-for-blocking-activation
ARGUMENTS_EXPECTED = "Object or array expected"

_HTTP_STATUS = {
    StatusCode.SUCCESS: 200,
    StatusCode.APPLICATION_ERROR: 502,
    StatusCode.DEVELOPER_ERROR: 502,
    StatusCode.WHISK_ERROR: 500,
}


def timeout_param(request: web.Request) -> int | None:
    raw = request.query.get("timeout")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 0 < value <= MAX_BLOCKING_TIMEOUT_MS:
        raise ApiError(
            400, f"Timeout must be number of milliseconds up to {MAX_BLOCKING_TIMEOUT_MS}."
        )
    return value


def answer(record: ActivationRecord, result_only: bool, headers: dict[str, str]) -> web.Response:
    status = _HTTP_STATUS.get(record.response.status_code, 500)
    result = record.response.result
    if result_only or isinstance(result, list):
        body = result if result is not None else {}
    else:
        body = record.to_api()
    return json_response(body, status=status, headers=headers)


@dataclass(frozen=True)
class InvokeRequest:
    """What an invoke asks for, read and validated before the action is looked up."""

    blocking: bool
    result_only: bool
    timeout_ms: int | None
    args: Any

    @classmethod
    async def read(cls, request: web.Request) -> InvokeRequest:
        blocking = bool_param(request, "blocking")
        result_only = bool_param(request, "result")
        timeout_ms = timeout_param(request)
        args = await read_json(request, request.app[LIMITS].payload_bytes,
                               expected=ARGUMENTS_EXPECTED)
        return cls(blocking, result_only, timeout_ms, args)


async def invoke_action(request: web.Request) -> web.Response:
    caller = identity(request)
    name = check_entity_name(request.match_info["name"])
    invocation = await InvokeRequest.read(request)
    doc = await request.app[ACTIONS].get(caller.namespace, name)
    if doc is None:
        raise ApiError(404, NOT_FOUND)
    return await run_invocation(request, doc, invocation)


async def run_invocation(
    request: web.Request, doc: ActionDoc, invocation: InvokeRequest,
    base: dict[str, Any] | None = None, binding: str | None = None,
) -> web.Response:
    """Activate ``doc`` for the caller and answer as OpenWhisk does; ``base`` parameters (a
    package's, a binding's) sit under the action's own; ``binding`` is the binding the action
    was reached through."""
    app = request.app
    caller = identity(request)
    args = invocation.args
    if args is not None and not isinstance(args, dict | list):
        raise malformed(ARGUMENTS_EXPECTED)
    try:
        payload = build_payload(doc, args, base=base)
    except ParametersNotAllowed as exc:
        raise ApiError(400, PARAMETERS_NOT_ALLOWED) from exc

    max_wait_ms = app[SETTINGS].max_blocking_wait_ms
    timeout_ms = invocation.timeout_ms
    wait_ms = min(timeout_ms, max_wait_ms) if timeout_ms is not None else max_wait_ms
    activation_id, record = await activate(
        app, doc, payload, namespace=caller.namespace,
        tid=transaction_id(request), wait_ms=wait_ms if invocation.blocking else None,
        binding=binding,
        idempotency_key=idempotency_key(request),
        traceparent=request.headers.get("traceparent"),
    )
    headers = {ACTIVATION_ID_HEADER: activation_id}
    if record is None:
        return json_response({"activationId": activation_id}, status=202, headers=headers)
    return answer(record, invocation.result_only, headers)


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise ApiError(400, f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY} characters.")
    return key


async def activate(
    app: web.Application, doc: ActionDoc, payload: Any, *, namespace: str, tid: str,
    wait_ms: int | None, binding: str | None = None, idempotency_key: str | None = None,
    traceparent: str | None = None,
) -> tuple[str, ActivationRecord | None]:
    """``_activate``, timed for ``ft_gateway_invoke_seconds``, in a span of its own that is
    a child of the caller's ``traceparent`` (if valid) and the parent of what follows."""
    began = time.perf_counter()
    attributes = {"faas.invoked_name": f"/{doc.namespace}/{doc.name}",
                  "ft.blocking": wait_ms is not None}
    try:
        with app[TRACER].span("invoke", valid_traceparent(traceparent), kind="server",
                              attributes=attributes) as span:
            activation_id, record = await _activate(
                app, doc, payload, namespace=namespace, tid=tid, wait_ms=wait_ms,
                binding=binding, idempotency_key=idempotency_key,
                traceparent=span.traceparent or new_traceparent())
            span.set("faas.invocation_id", activation_id)
            return activation_id, record
    finally:
        metrics = app[GATEWAY_METRICS]
        latency = metrics.invoke_async if wait_ms is None else metrics.invoke_blocking
        latency.observe(time.perf_counter() - began)


async def _activate(
    app: web.Application, doc: ActionDoc, payload: Any, *, namespace: str, tid: str,
    wait_ms: int | None, binding: str | None, idempotency_key: str | None, traceparent: str,
) -> tuple[str, ActivationRecord | None]:
    """Publish one activation of ``doc`` owned by ``namespace``; with ``wait_ms`` wait that
    long for its record. The record is None when not waiting or the wait expired (the
    activation goes on). Over a throttle of ``namespace``: 429; publish failures: 503.

    Every top-level request passes here once (actions, packaged and web actions, sequences),
    so each is throttled once; a sequence's components are not, as in OpenWhisk.

    A blocking activation of an action an invoker holds warm first tries the direct path
    (``gateway.direct``); whatever it cannot finish is published here as usual."""
    blocking = wait_ms is not None
    activation_id = new_activation_id()
    resent = False
    if idempotency_key is not None:
        claimed = await app[STORE].claim_idempotency_key(namespace, idempotency_key,
                                                         activation_id)
        if claimed != activation_id:
            record = await app[STORE].get_record(claimed)
            if record is not None:
                return claimed, record if blocking else None
            # No record yet: the first request may never have been published (its gateway
            # died first), so publish again under the same id.
            activation_id, resent = claimed, True
    await admit_invocation(app, namespace, doc, activation_id)
    activation = build_request(
        doc, payload, namespace=namespace,
        activation_id=activation_id, transaction_id=tid, asynchronous=not blocking,
        binding=binding,
    )
    activation.blocking = blocking
    activation.traceparent = traceparent
    if resent:
        activation.resent = True
    if wait_ms is None:
        await _publish(app, activation, namespace)
        return activation_id, None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_ms / 1000
    direct = app.get(DIRECT)
    # A resent activation may have run already: only the queue path looks for its record.
    invoker = (direct.route(activation.action.key)
               if direct and not activation.composition and not resent else None)
    if direct is not None and invoker is not None:
        # Past the action's own limit (the invoker enforces it) the invoker is presumed frozen.
        limit_s = doc.limits.timeout / 1000 + app[SETTINGS].direct_margin_s
        ran = await direct.run(invoker, activation, min(wait_ms / 1000, limit_s))
        app[GATEWAY_METRICS].direct.labels(
            "hit" if isinstance(ran, ActivationRecord) else ran.value).inc()
        if isinstance(ran, ActivationRecord):
            return activation_id, ran
        if ran is Miss.PENDING:
            # Still running there: the initializer supervises it on that invoker from now on.
            activation = activation.model_copy(update={"held_by": invoker})
        elif ran is Miss.LOST:
            activation = activation.model_copy(update={"attempt": activation.attempt + 1})
    waiters = app[WAITERS]
    activation.reply_to = waiters.queue_name
    future = waiters.register(activation_id)
    try:
        await _publish(app, activation, namespace)
    except BaseException:
        waiters.discard(activation_id)
        raise
    record = await _wait_for_record(app, future, activation_id, deadline - loop.time())
    if record is not None and direct is not None:
        direct.ran(activation.action.key, record)
    return activation_id, record


async def _publish(app: web.Application, activation: ActivationRequest, namespace: str) -> None:
    activation_id = activation.activation_id
    try:
        await app[PUBLISHER].publish(activation)
    except Exception as exc:
        await _release_slot(app, namespace, activation_id)
        log.warning("publish of %s failed: %s", activation_id, exc)
        raise ApiError(503, UNAVAILABLE) from exc


async def _release_slot(app: web.Application, namespace: str, activation_id: str) -> None:
    # Never published, so no record will free the slot; Redis may be what failed, and then
    # the slot's deadline frees it instead.
    try:
        await app[STORE].release_in_flight(namespace, activation_id)
    except Exception as exc:
        log.warning("could not free the slot of %s: %s", activation_id, exc)


async def _wait_for_record(
    app: web.Application, future: ReplyFuture, activation_id: str, wait_s: float
) -> ActivationRecord | None:
    try:
        record = await asyncio.wait_for(future, max(wait_s, 0.0))
    except TimeoutError:
        record = None
    finally:
        app[WAITERS].discard(activation_id)
    if record is None:
        # One read, not a poll: a reply lost in a broker reconnect still has its record.
        record = await app[STORE].get_record(activation_id)
    return record
