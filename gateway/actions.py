"""``/api/v1/namespaces/{ns}/actions[/{name}]``: create/update, get, delete, list.
(Invoking, ``POST .../actions/{name}``, lives in ``gateway.invoke``.)"""

from __future__ import annotations

from aiohttp import web

from bus.ids import now_ms
from bus.models import ActionDoc, ActionExec
from bus.store import Store
from gateway.action_docs import (
    ExecPut,
    action_json,
    action_summary,
    created_doc,
    is_binary_code,
    parse_action_put,
    updated_doc,
)
from gateway.auth import namespace
from gateway.errors import ALREADY_EXISTS, CONFLICT, NOT_FOUND, ApiError
from gateway.jsonio import json_response
from gateway.state import LIMITS, STORE
from gateway.validation import bool_param, check_entity_name, list_window, read_object

COLLECTION = "actions"

async def _store_exec(store: Store, spec: ExecPut) -> ActionExec:
    digest = await store.put_code(spec.code)
    return ActionExec(
        kind=spec.kind, code_digest=digest, code_size=spec.code_size,
        binary=is_binary_code(spec.code), main=spec.main,
    )


async def _code_of(store: Store, doc: ActionDoc) -> str | None:
    return await store.get_code(doc.exec.code_digest) if doc.exec.code_digest else None


async def put_action(request: web.Request) -> web.Response:
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    overwrite = bool_param(request, "overwrite")
    limits = request.app[LIMITS]
    store = request.app[STORE]
    put = parse_action_put(await read_object(request, limits.request_bytes), limits)

    existing = await store.get_action(ns, name)
    if existing is not None and not overwrite:
        raise ApiError(409, ALREADY_EXISTS)
    updated = now_ms()
    if existing is None:
        if put.exec is None:
            raise ApiError(400, "exec undefined")
        doc = created_doc(ns, name, put, await _store_exec(store, put.exec), updated)
    else:
        new_exec = await _store_exec(store, put.exec) if put.exec is not None else None
        doc = updated_doc(existing, put, new_exec, updated)
    # Compare-and-set against the document read above: a concurrent writer makes this a 409.
    if not await store.put_entity(COLLECTION, ns, name, doc, updated, replaces=existing):
        raise ApiError(409, CONFLICT)
    code = put.exec.code if put.exec is not None else await _code_of(store, doc)
    return json_response(action_json(doc, code))


async def get_action(request: web.Request) -> web.Response:
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    include_code = bool_param(request, "code", default=True)
    store = request.app[STORE]
    doc = await store.get_action(ns, name)
    if doc is None:
        raise ApiError(404, NOT_FOUND)
    code = await _code_of(store, doc) if include_code else None
    return json_response(action_json(doc, code, include_code=include_code))


async def delete_action(request: web.Request) -> web.Response:
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    store = request.app[STORE]
    doc = await store.delete_entity(COLLECTION, ns, name, ActionDoc)
    if doc is None:
        raise ApiError(404, NOT_FOUND)
    # Code is content-addressed and shared between versions, so it outlives the action.
    return json_response(action_json(doc, await _code_of(store, doc)))


async def list_actions(request: web.Request) -> web.Response:
    ns = namespace(request)
    window = list_window(request, COLLECTION, request.app[LIMITS])
    store = request.app[STORE]
    if window.count:
        return json_response({COLLECTION: await store.count_entities(COLLECTION, ns)})
    docs = await store.list_entities(
        COLLECTION, ns, ActionDoc, skip=window.skip, limit=window.limit
    )
    return json_response([action_summary(doc) for doc in docs])
