"""``/api/v1/namespaces/{ns}/rules[/{name}]``: create/update, get, delete, list, and
enable/disable (``POST`` with ``{"status": ...}``).

The rule document is written first and its link into the trigger second: a rule whose link is
missing is merely inactive, whereas a link without its rule would make fires reach an action
nobody asked for. Delete goes the other way round for the same reason."""

from __future__ import annotations

from aiohttp import web

from bus.events import EntityRef, RuleDoc, RuleLink
from bus.ids import now_ms
from bus.resolution import ResolutionError, Unresolved, resolve_action
from gateway.auth import namespace
from gateway.bodies import read_object
from gateway.entities import list_response, not_found, refuse_overwrite, store_document
from gateway.errors import FORBIDDEN, NOT_FOUND, ApiError
from gateway.jsonio import json_response
from gateway.rule_docs import (
    RULES,
    RulePut,
    RuleStatus,
    created_rule,
    parse_rule_put,
    parse_status_request,
    rule_json,
    rule_key,
    rule_status,
    updated_rule,
)
from gateway.rule_links import get_trigger, link_rule, unlink_rule
from gateway.state import LIMITS, STORE
from gateway.validation import bool_param, check_entity_name


async def _check_references(
    request: web.Request, ns: str, trigger: EntityRef, action: EntityRef
) -> None:
    """Triggers must be the caller's own; actions the caller's own, in its packages and
    bindings, or in packages other namespaces published (403 otherwise). Then both must
    exist (400)."""
    if trigger.path != ns:
        raise ApiError(403, FORBIDDEN)
    store = request.app[STORE]
    try:
        await resolve_action(store, ns, action.path, action.name)
        action_missing = False
    except ResolutionError as exc:
        if exc.reason is Unresolved.FORBIDDEN:
            raise ApiError(403, FORBIDDEN) from None
        action_missing = True
    if await get_trigger(store, trigger) is None:
        raise ApiError(400, f"trigger {trigger.fqn} does not exist")
    if action_missing:
        raise ApiError(400, f"action {action.fqn} does not exist")


def _references(put: RulePut, existing: RuleDoc | None) -> tuple[EntityRef, EntityRef]:
    trigger = put.trigger or (existing.trigger if existing else None)
    action = put.action or (existing.action if existing else None)
    if trigger is None or action is None:
        raise ApiError(400, "rule requires a valid trigger and a valid action")
    return trigger, action


async def put_rule(request: web.Request) -> web.Response:
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    overwrite = bool_param(request, "overwrite")
    limits = request.app[LIMITS]
    store = request.app[STORE]
    put = parse_rule_put(await read_object(request, limits.request_bytes), ns, limits)

    existing = await store.get_entity(RULES, ns, name, RuleDoc)
    refuse_overwrite(existing, overwrite)
    trigger, action = _references(put, existing)
    await _check_references(request, ns, trigger, action)
    key = rule_key(ns, name)
    updated = now_ms()
    status: RuleStatus
    if existing is None:
        doc = created_rule(ns, name, put, trigger, action, updated)
        status = "active"
    else:
        doc = updated_rule(existing, put, trigger, action, updated)
        # An update keeps the rule's state, read from where it was linked until now.
        status = rule_status(await get_trigger(store, existing.trigger), key)
    await store_document(request, RULES, ns, name, doc, updated, replaces=existing)

    if existing is not None and existing.trigger != trigger:
        await unlink_rule(store, existing.trigger, key)
    linked = await link_rule(store, trigger, key, RuleLink(action=action, status=status))
    # The trigger vanished since it was checked: the rule stays, inactive.
    return json_response(rule_json(doc, status if linked is not None else "inactive"))


async def _rule(request: web.Request) -> RuleDoc:
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    doc = await request.app[STORE].get_entity(RULES, ns, name, RuleDoc)
    if doc is None:
        raise await not_found(request, RULES, ns, name)
    return doc


async def get_rule(request: web.Request) -> web.Response:
    doc = await _rule(request)
    trigger = await get_trigger(request.app[STORE], doc.trigger)
    return json_response(rule_json(doc, rule_status(trigger, rule_key(doc.namespace, doc.name))))


async def delete_rule(request: web.Request) -> web.Response:
    """Works whether or not the rule is active or its trigger still exists."""
    doc = await _rule(request)
    store = request.app[STORE]
    await unlink_rule(store, doc.trigger, rule_key(doc.namespace, doc.name))
    deleted = await store.delete_entity(RULES, doc.namespace, doc.name, RuleDoc)
    if deleted is None:
        raise ApiError(404, NOT_FOUND)
    return json_response(rule_json(deleted, "inactive"))


async def set_rule_state(request: web.Request) -> web.Response:
    """Enable or disable; asking for the state the rule is in is a success too."""
    limits = request.app[LIMITS]
    status = parse_status_request(await read_object(request, limits.request_bytes))
    doc = await _rule(request)
    link = RuleLink(action=doc.action, status=status)
    linked = await link_rule(
        request.app[STORE], doc.trigger, rule_key(doc.namespace, doc.name), link
    )
    if linked is None:
        raise ApiError(404, "Only rules with existing triggers can be activated")
    return web.Response(status=200)


async def list_rules(request: web.Request) -> web.Response:
    """Full rule documents without ``status`` (clients get each rule for it)."""
    return await list_response(request, RULES, RuleDoc, lambda doc: rule_json(doc, None))
