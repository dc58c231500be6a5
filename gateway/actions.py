"""``/api/v1/namespaces/{ns}/actions[/{name}]``: create/update, get, delete, list.
(Invoking, ``POST .../actions/{name}``, lives in ``gateway.invoke``.)"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from bus.ids import now_ms
from bus.models import ActionDoc, ActionExec
from bus.store import Store
from gateway.action_docs import (
    ActionPut,
    ExecPut,
    action_json,
    action_summary,
    created_doc,
    is_binary_code,
    parse_action_put,
    updated_doc,
)
from gateway.auth import namespace
from gateway.bodies import read_object
from gateway.entities import list_response, not_found, refuse_overwrite, store_document
from gateway.errors import ApiError
from gateway.jsonio import json_response
from gateway.sequence_docs import actions_parameter, resolve_components
from gateway.state import LIMITS, STORE
from gateway.validation import bool_param, check_entity_name

COLLECTION = "actions"


async def store_exec(store: Store, spec: ExecPut) -> ActionExec:
    if spec.components is not None:  # a sequence has no code
        return ActionExec(kind=spec.kind, components=spec.components)
    # A blackbox image may carry its action itself and then has no code.
    digest = await store.put_code(spec.code) if spec.code or spec.image is None else None
    return ActionExec(
        kind=spec.kind, code_digest=digest, code_size=spec.code_size,
        binary=bool(spec.code) and is_binary_code(spec.code), main=spec.main, image=spec.image,
    )


async def code_of(store: Store, doc: ActionDoc) -> str | None:
    return await store.get_code(doc.exec.code_digest) if doc.exec.code_digest else None


async def put_action(request: web.Request) -> web.Response:
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    overwrite = bool_param(request, "overwrite")
    limits = request.app[LIMITS]
    put = parse_action_put(await read_object(request, limits.request_bytes), limits)
    return await write_action(request, put, action_ns=ns, name=name, caller_ns=ns,
                              overwrite=overwrite)


async def write_action(
    request: web.Request, put: ActionPut, *, action_ns: str, name: str, caller_ns: str,
    overwrite: bool,
) -> web.Response:
    """Create or update the action ``action_ns/name`` (``action_ns`` is ``ns`` or ``ns/pkg``)
    from a parsed PUT body; ``caller_ns`` resolves ``_`` in sequence components."""
    store = request.app[STORE]
    if put.exec is not None and put.exec.components is not None:
        components = await resolve_components(
            store, put.exec.components, caller_ns=caller_ns, self_owner=action_ns,
            self_name=name)
        put = replace(put, exec=replace(put.exec, components=components),
                      parameters=actions_parameter(components))
    existing = await store.get_action(action_ns, name)
    refuse_overwrite(existing, overwrite)
    updated = now_ms()
    if existing is None:
        if put.exec is None:
            raise ApiError(400, "exec undefined")
        doc = created_doc(action_ns, name, put, await store_exec(store, put.exec), updated)
    else:
        new_exec = await store_exec(store, put.exec) if put.exec is not None else None
        doc = updated_doc(existing, put, new_exec, updated)
    await store_document(request, COLLECTION, action_ns, name, doc, updated, replaces=existing)
    code = put.exec.code if put.exec is not None else await code_of(store, doc)
    return json_response(action_json(doc, code))


async def get_action(request: web.Request) -> web.Response:
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    include_code = bool_param(request, "code", default=True)
    store = request.app[STORE]
    doc = await store.get_action(ns, name)
    if doc is None:
        raise await not_found(request, COLLECTION, ns, name)
    code = await code_of(store, doc) if include_code else None
    return json_response(action_json(doc, code, include_code=include_code))


async def delete_action(request: web.Request) -> web.Response:
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    store = request.app[STORE]
    doc = await store.delete_entity(COLLECTION, ns, name, ActionDoc)
    if doc is None:
        raise await not_found(request, COLLECTION, ns, name)
    # Code is content-addressed and shared between versions, so it outlives the action.
    return json_response(action_json(doc, await code_of(store, doc)))


async def list_actions(request: web.Request) -> web.Response:
    return await list_response(request, COLLECTION, ActionDoc, action_summary)
