"""``POST /api/v1/namespaces/{ns}/actions/{name}``: publish an ``ActivationRequest`` and, when
blocking, wait for its ``ActivationDone`` on this gateway's reply queue.

Nothing is promised before the broker confirmed the publish: only then is the user told the
activation id (202), and only a confirmed activation is waited for. No polling: the waiter is
resolved by the reply consumer; one record read happens only when the wait expired, in case
the reply was lost while the record was written.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from bus.broker import ACTIVATIONS
from bus.ids import new_activation_id, now_ms
from bus.models import (
    ActionDoc,
    ActionSnapshot,
    ActivationRecord,
    ActivationRequest,
    StatusCode,
)
from gateway.action_docs import PROVIDE_API_KEY, truthy
from gateway.auth import Identity, identity
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
from gateway.state import BROKER, LIMITS, SETTINGS, STORE, WAITERS
from gateway.validation import bool_param, check_entity_name, parse_json, read_body

log = logging.getLogger(__name__)

ACTIVATION_ID_HEADER = "x-openwhisk-activation-id"
MAX_BLOCKING_TIMEOUT_MS = 60_000  # controller.activation.max-wait-for-blocking-activation

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


def _env_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def build_payload(doc: ActionDoc, args: Any) -> Any:
    """The action's (non-init) parameters under the request's object; an array passes as-is."""
    if isinstance(args, list):
        return args
    if args is not None and not isinstance(args, dict):
        raise malformed("Object or array expected")
    params = {kv.key: kv.value for kv in doc.parameters if not kv.init}
    if not args:
        return params
    # With the `final` annotation, parameters that have a value cannot be overridden.
    if truthy(doc.annotation("final")) and any(
        params.get(key) is not None for key in args
    ):
        raise ApiError(400, PARAMETERS_NOT_ALLOWED)
    return {**params, **args}


def build_request(
    doc: ActionDoc, payload: Any, caller: Identity, *, activation_id: str, tid: str,
    reply_to: str | None,
) -> ActivationRequest:
    provide_api_key = truthy(doc.annotation(PROVIDE_API_KEY))
    snapshot = ActionSnapshot(
        namespace=doc.namespace,
        name=doc.name,
        version=doc.version,
        kind=doc.exec.kind,
        code_digest=doc.exec.code_digest,
        binary=doc.exec.binary,
        main=doc.exec.main or "main",
        limits=doc.limits,
        init_env={kv.key: _env_value(kv.value) for kv in doc.parameters if kv.init},
        provide_api_key=provide_api_key,
    )
    return ActivationRequest(
        activation_id=activation_id,
        transaction_id=tid,
        invoking_namespace=caller.namespace,
        subject=caller.namespace,
        action=snapshot,
        payload=payload,
        blocking=reply_to is not None,
        reply_to=reply_to,
        api_key=caller.api_key if provide_api_key else None,
        accepted_at=now_ms(),
    )


def answer(record: ActivationRecord, result_only: bool, headers: dict[str, str]) -> web.Response:
    status = _HTTP_STATUS.get(record.response.status_code, 500)
    result = record.response.result
    if result_only or isinstance(result, list):
        body = result if result is not None else {}
    else:
        body = record.to_api()
    return json_response(body, status=status, headers=headers)


async def invoke_action(request: web.Request) -> web.Response:
    app = request.app
    caller = identity(request)
    name = check_entity_name(request.match_info["name"])
    blocking = bool_param(request, "blocking")
    result_only = bool_param(request, "result")
    timeout_ms = timeout_param(request)
    args = parse_json(await read_body(request, app[LIMITS].payload_bytes))

    doc = await app[STORE].get_action(caller.namespace, name)
    if doc is None:
        raise ApiError(404, NOT_FOUND)
    payload = build_payload(doc, args)

    waiters = app[WAITERS]
    activation_id = new_activation_id()
    activation = build_request(
        doc, payload, caller, activation_id=activation_id, tid=transaction_id(request),
        reply_to=waiters.queue_name if blocking else None,
    )
    headers = {ACTIVATION_ID_HEADER: activation_id}
    future = waiters.register(activation_id) if blocking else None
    try:
        await app[BROKER].publish(activation, routing_key=ACTIVATIONS, message_id=activation_id)
    except Exception as exc:
        waiters.discard(activation_id)
        log.warning("publish of %s failed: %s", activation_id, exc)
        raise ApiError(503, UNAVAILABLE) from exc
    except BaseException:  # cancelled while publishing: nobody will wait
        waiters.discard(activation_id)
        raise

    if future is None:
        return json_response({"activationId": activation_id}, status=202, headers=headers)
    max_wait_ms = app[SETTINGS].max_blocking_wait_ms
    wait_ms = min(timeout_ms, max_wait_ms) if timeout_ms is not None else max_wait_ms
    record = await _wait_for_record(request, future, activation_id, wait_ms / 1000)
    if record is None:
        return json_response({"activationId": activation_id}, status=202, headers=headers)
    return answer(record, result_only, headers)


async def _wait_for_record(
    request: web.Request, future: ReplyFuture, activation_id: str, wait_s: float
) -> ActivationRecord | None:
    try:
        record = await asyncio.wait_for(future, wait_s)
    except TimeoutError:
        record = None
    finally:
        request.app[WAITERS].discard(activation_id)
    if record is None:
        # One read, not a poll: a reply lost in a broker reconnect still has its record.
        record = await request.app[STORE].get_record(activation_id)
    return record
