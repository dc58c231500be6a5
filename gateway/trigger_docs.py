"""Triggers between OpenWhisk's JSON and ``bus.events.TriggerDoc``: the PUT body validated,
create/update rules, and the GET/list shapes (``ctl/Triggers.scala``). Pure functions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bus.events import EntityRef, RuleLink, TriggerDoc
from bus.models import KeyValue
from gateway.entity_docs import (
    CommonPut,
    bump_patch,
    checked_key_values,
    key_values_json,
    parse_common_put,
)
from gateway.errors import ApiError, malformed
from gateway.validation import GatewayLimits, is_entity_name

TRIGGERS = "triggers"
FEED_ANNOTATION = "feed"


@dataclass(frozen=True)
class TriggerPut:
    """A validated PUT body; None means "not given" (keep the old value on update)."""

    parameters: list[KeyValue] | None = None
    limits: dict[str, Any] | None = None
    common: CommonPut = field(default_factory=CommonPut)


def is_entity_path(text: str) -> bool:
    """``name``, ``ns/name`` or ``ns/pkg/name``, with or without the leading slash."""
    segments = text.removeprefix("/").split("/")
    return 1 <= len(segments) <= 3 and all(is_entity_name(s) for s in segments)


def _check_feed(annotations: list[KeyValue] | None) -> None:
    feed = next((kv.value for kv in annotations or [] if kv.key == FEED_ANNOTATION), None)
    if feed is not None and not (isinstance(feed, str) and is_entity_path(feed)):
        raise ApiError(400, "Feed name is not valid")


def parse_trigger_put(body: dict[str, Any], limits: GatewayLimits) -> TriggerPut:
    """Validate a PUT body (``namespace``/``name``/``rules`` in it are ignored)."""
    parameters = (
        checked_key_values(body, "parameters", limits)
        if body.get("parameters") is not None else None
    )
    trigger_limits = body.get("limits")
    if trigger_limits is not None and not isinstance(trigger_limits, dict):
        raise malformed("'limits' must be an object")
    common = parse_common_put(body, limits)
    # OpenWhisk checks the feed on create only; a bad feed name is as useless on update.
    _check_feed(common.annotations)
    return TriggerPut(parameters=parameters, limits=trigger_limits, common=common)


def created_trigger(ns: str, name: str, put: TriggerPut, updated: int) -> TriggerDoc:
    return TriggerDoc(
        namespace=ns,
        name=name,
        version=put.common.version or "0.0.1",
        publish=bool(put.common.publish),
        parameters=put.parameters or [],
        limits=put.limits or {},
        annotations=put.common.annotations or [],
        updated=updated,
    )


def updated_trigger(old: TriggerDoc, put: TriggerPut, updated: int) -> TriggerDoc:
    """OpenWhisk's trigger update: each given field replaces the old one wholesale (annotations
    too, unlike actions), the patch version is bumped unless given, rule links are kept."""
    common = put.common
    return old.model_copy(update={
        "version": common.version or bump_patch(old.version),
        "publish": old.publish if common.publish is None else common.publish,
        "parameters": old.parameters if put.parameters is None else put.parameters,
        "limits": old.limits if put.limits is None else put.limits,
        "annotations": old.annotations if common.annotations is None else common.annotations,
        "updated": updated,
    })


def has_active_rule(doc: TriggerDoc) -> bool:
    return any(link.status == "active" for link in (doc.rules or {}).values())


# -- answers --------------------------------------------------------------------------------


def ref_json(ref: EntityRef) -> dict[str, str]:
    return {"path": ref.path, "name": ref.name}


def _link_json(link: RuleLink) -> dict[str, Any]:
    return {"action": ref_json(link.action), "status": link.status}


def trigger_json(doc: TriggerDoc) -> dict[str, Any]:
    """OpenWhisk's WhiskTrigger JSON (GET, PUT and DELETE answers). Trigger limits are an
    empty object in OpenWhisk whatever was sent; ``rules`` appear once a rule was linked."""
    out: dict[str, Any] = {
        "namespace": doc.namespace,
        "name": doc.name,
        "version": doc.version,
        "publish": doc.publish,
        "parameters": key_values_json(doc.parameters),
        "limits": {},
        "annotations": key_values_json(doc.annotations),
        "updated": doc.updated,
    }
    if doc.rules is not None:
        out["rules"] = {key: _link_json(link) for key, link in doc.rules.items()}
    return out


def trigger_summary(doc: TriggerDoc) -> dict[str, Any]:
    return {
        "namespace": doc.namespace,
        "name": doc.name,
        "version": doc.version,
        "publish": doc.publish,
        "annotations": key_values_json(doc.annotations),
        "updated": doc.updated,
    }
