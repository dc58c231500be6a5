"""Building activation records and the bodies of the proxy protocol from a request."""

from __future__ import annotations

import json
from typing import Any

from bus.models import (
    ActivationRecord,
    ActivationRequest,
    ActivationResponse,
    KeyValue,
    StatusCode,
)
from invoker.outcome import Outcome


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _ow_env(req: ActivationRequest, deadline: int, api_key: str | None) -> dict[str, str]:
    action = req.action
    env = {
        "__OW_NAMESPACE": req.invoking_namespace,
        "__OW_ACTION_NAME": f"/{action.path}",
        "__OW_ACTION_VERSION": action.version,
        "__OW_ACTIVATION_ID": req.activation_id,
        "__OW_TRANSACTION_ID": req.transaction_id,
        "__OW_DEADLINE": str(deadline),
    }
    if api_key:
        env["__OW_API_KEY"] = api_key
    return env


def init_body(
    req: ActivationRequest, code: str | None, deadline: int, api_key: str | None = None
) -> bytes:
    """``api_key``: the key minted for this activation, when the action asked for one."""
    action = req.action
    value: dict[str, Any] = {
        "name": action.name,
        "main": action.main,
        "binary": action.binary,
        "env": {**action.init_env, **_ow_env(req, deadline, api_key)},
    }
    if code is not None:
        value["code"] = code
    return _dumps({"value": value})


def run_body(req: ActivationRequest, deadline: int, api_key: str | None = None) -> bytes:
    action = req.action
    body: dict[str, Any] = {
        "value": req.payload,
        "namespace": req.invoking_namespace,
        "action_name": f"/{action.path}",
        "action_version": action.version,
        "activation_id": req.activation_id,
        "transaction_id": req.transaction_id,
        "deadline": str(deadline),
    }
    if api_key:
        body["api_key"] = api_key
    return _dumps(body)


def build_record(
    req: ActivationRequest, outcome: Outcome, *, start: int, end: int, logs: list[str],
    init_ms: int | None, invoker_id: str, container_start: str | None = None,
) -> ActivationRecord:
    action = req.action
    annotations = [
        KeyValue(key="limits", value=action.limits.model_dump()),
        KeyValue(key="path", value=action.path),
        KeyValue(key="kind", value=action.kind),
        KeyValue(key="timeout", value=outcome.timed_out),
    ]
    if init_ms is not None:
        annotations.append(KeyValue(key="initTime", value=init_ms))
    annotations.append(KeyValue(key="waitTime", value=max(0, start - req.accepted_at)))
    if req.caused_by:
        annotations.append(KeyValue(key="causedBy", value=req.caused_by))
    if req.binding:
        annotations.append(KeyValue(key="binding", value=req.binding))
    if req.traceparent:
        annotations.append(KeyValue(key="traceparent", value=req.traceparent))
    return ActivationRecord(
        namespace=req.invoking_namespace,
        name=action.name,
        version=action.version,
        subject=req.subject,
        activationId=req.activation_id,
        start=start,
        end=end,
        response=ActivationResponse(status_code=outcome.status, result=outcome.result),
        logs=logs,
        annotations=annotations,
        cause=req.cause,
        invoker=invoker_id,
        container_start=container_start,
        attempts=req.attempt,
    )


def is_system_error(record: ActivationRecord) -> bool:
    return record.response.status_code == StatusCode.WHISK_ERROR
