"""Rules between OpenWhisk's JSON and ``bus.events.RuleDoc``: trigger/action references, the PUT
and status bodies, and the GET/list shapes (``ctl/Rules.scala``). Pure functions.

A rule's status is not in the rule: it lives in its trigger's document, next to the link that
makes fires reach the action, so a fire reads one document to know where to go."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bus.events import EntityRef, RuleDoc, TriggerDoc
from gateway.entity_docs import CommonPut, bump_patch, key_values_json, parse_common_put
from gateway.errors import ApiError, malformed
from gateway.trigger_docs import ref_json
from gateway.validation import GatewayLimits, is_entity_name

RULES = "rules"
RuleStatus = Literal["active", "inactive"]
_STATES: tuple[RuleStatus, ...] = ("active", "inactive")


def rule_key(ns: str, name: str) -> str:
    """The rule's key in its trigger's ``rules`` map."""
    return f"{ns}/{name}"


def parse_ref(value: Any, field_name: str, ns: str) -> EntityRef | None:
    """``/ns/name``, ``/ns/pkg/name``, ``ns/name``, ``name`` (in ``ns``) or
    ``{"path", "name"}``; ``_`` is the caller's namespace. None when not given."""
    if value is None or value == "":
        return None
    if isinstance(value, dict):
        path, name = value.get("path"), value.get("name")
        if not isinstance(path, str) or not isinstance(name, str):
            raise malformed(f"'{field_name}' must have a string 'path' and 'name'")
        segments = [*path.removeprefix("/").split("/"), name]
    elif isinstance(value, str):
        segments = value.removeprefix("/").split("/")
    else:
        raise malformed(f"'{field_name}' must be a fully qualified entity name")
    if not 1 <= len(segments) <= 3 or not all(is_entity_name(s) for s in segments):
        raise malformed(f"'{field_name}' is not a valid fully qualified entity name: {value}")
    if len(segments) == 1:
        segments = [ns, *segments]
    if segments[0] == "_":
        segments[0] = ns
    return EntityRef(path="/".join(segments[:-1]), name=segments[-1])


@dataclass(frozen=True)
class RulePut:
    """A validated PUT body (``status`` in it is ignored, as OpenWhisk does)."""

    trigger: EntityRef | None = None
    action: EntityRef | None = None
    common: CommonPut = field(default_factory=CommonPut)


def parse_rule_put(body: dict[str, Any], ns: str, limits: GatewayLimits) -> RulePut:
    return RulePut(
        trigger=parse_ref(body.get("trigger"), "trigger", ns),
        action=parse_ref(body.get("action"), "action", ns),
        common=parse_common_put(body, limits),
    )


def parse_status_request(body: dict[str, Any]) -> RuleStatus:
    """The body of ``POST .../rules/{name}``: ``{"status": "active"|"inactive"}``."""
    status = body.get("status")
    for state in _STATES:
        if status == state:
            return state
    shown = "" if status is None else status
    raise ApiError(
        400, f"'{shown}' is not a recognized rule state, must be one of ['active', 'inactive']"
    )


def created_rule(
    ns: str, name: str, put: RulePut, trigger: EntityRef, action: EntityRef, updated: int
) -> RuleDoc:
    return RuleDoc(
        namespace=ns,
        name=name,
        version=put.common.version or "0.0.1",
        publish=bool(put.common.publish),
        annotations=put.common.annotations or [],
        trigger=trigger,
        action=action,
        updated=updated,
    )


def updated_rule(
    old: RuleDoc, put: RulePut, trigger: EntityRef, action: EntityRef, updated: int
) -> RuleDoc:
    """Given fields replace old ones; the patch version is bumped unless given."""
    common = put.common
    return old.model_copy(update={
        "version": common.version or bump_patch(old.version),
        "publish": old.publish if common.publish is None else common.publish,
        "annotations": old.annotations if common.annotations is None else common.annotations,
        "trigger": trigger,
        "action": action,
        "updated": updated,
    })


def rule_status(trigger: TriggerDoc | None, key: str) -> RuleStatus:
    """From the trigger's link; a missing trigger or link means inactive."""
    link = (trigger.rules or {}).get(key) if trigger is not None else None
    return link.status if link is not None else "inactive"


def rule_json(doc: RuleDoc, status: RuleStatus | None) -> dict[str, Any]:
    """OpenWhisk's WhiskRuleResponse JSON; list items (``status`` None) leave it out."""
    out: dict[str, Any] = {"namespace": doc.namespace, "name": doc.name}
    if status is not None:
        out["status"] = status
    out.update({
        "version": doc.version,
        "publish": doc.publish,
        "annotations": key_values_json(doc.annotations),
        "trigger": ref_json(doc.trigger),
        "action": ref_json(doc.action),
        "updated": doc.updated,
    })
    return out
