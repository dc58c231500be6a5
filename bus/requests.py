"""How an ActivationRequest is made from an action document: the one definition the gateway
(invokes) and the initializer (rule fan-out, destinations) share."""

from __future__ import annotations

import json
from typing import Any

from bus.ids import now_ms
from bus.models import ActionDoc, ActionSnapshot, ActivationRequest, AsyncPolicy

PROVIDE_API_KEY = "provide-api-key"
# An action whose data must not leave this platform: never sent to a remote pool.
LOCAL_ONLY = "local-only"
SEQUENCE = "sequence"
CONDUCTOR = "conductor"


class ParametersNotAllowed(ValueError):
    """The request tried to override a parameter the action marks final."""


def truthy(value: Any) -> bool:
    """OpenWhisk's ``isTruthy`` for annotation values."""
    if value is None or value is False:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0
    if isinstance(value, str):
        return value != ""
    return True


def _env_value(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def build_payload(doc: ActionDoc, args: Any, base: dict[str, Any] | None = None) -> Any:
    """``base`` (e.g. trigger parameters) < the action's (non-init) parameters < ``args``; an
    array argument passes as-is, unmerged."""
    if isinstance(args, list):
        return args
    # A sequence's only parameter is its internal component list; it never reaches actions.
    own = [] if doc.exec.kind == SEQUENCE else doc.parameters
    params = {**(base or {}), **{kv.key: kv.value for kv in own if not kv.init}}
    if not args:
        return params
    # With the `final` annotation, parameters that have a value cannot be overridden.
    if truthy(doc.annotation("final")) and any(params.get(key) is not None for key in args):
        raise ParametersNotAllowed(list(args))
    return {**params, **args}


def async_policy(doc: ActionDoc) -> AsyncPolicy:
    """The action's async invocation settings from its annotations, clamped to Lambda's
    ranges (retries 0..2, event age 60 s .. 6 h)."""
    policy = AsyncPolicy()
    retries = doc.annotation("maxRetries")
    if isinstance(retries, int | float) and not isinstance(retries, bool):
        policy.max_retries = max(0, min(2, int(retries)))
    age = doc.annotation("maxEventAgeSeconds")
    if isinstance(age, int | float) and not isinstance(age, bool):
        policy.max_event_age_s = max(60, min(21600, int(age)))
    for key, attr in (("onFailure", "on_failure"), ("onSuccess", "on_success")):
        target = doc.annotation(key)
        if isinstance(target, str) and target:
            setattr(policy, attr, target)
    return policy


def build_request(
    doc: ActionDoc, payload: Any, *, namespace: str, activation_id: str, transaction_id: str,
    reply_to: str | None = None, asynchronous: bool = False,
    cause: str | None = None, caused_by: str | None = None, binding: str | None = None,
) -> ActivationRequest:
    """``asynchronous`` requests carry the action's async policy (retries, destinations);
    no key travels with the request: an action that asks for ``__OW_API_KEY`` gets one minted
    for its run by the invoker (bus/keys.py)."""
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
        components=doc.exec.components,
        # OpenWhisk ignores the annotation on sequences.
        conductor=doc.exec.kind != SEQUENCE and truthy(doc.annotation(CONDUCTOR)),
        image=doc.exec.image,
        # An action holding a key of this platform calls back into it: it stays here too.
        may_leave=not provide_api_key and not truthy(doc.annotation(LOCAL_ONLY)),
    )
    policy = async_policy(doc) if asynchronous else None
    return ActivationRequest(
        activation_id=activation_id,
        transaction_id=transaction_id,
        invoking_namespace=namespace,
        subject=namespace,
        action=snapshot,
        payload=payload,
        blocking=reply_to is not None,
        reply_to=reply_to,
        accepted_at=now_ms(),
        max_age_ms=policy.max_event_age_s * 1000 if policy else 6 * 3600 * 1000,
        cause=cause,
        policy=policy,
        caused_by=caused_by,
        binding=binding,
    )
