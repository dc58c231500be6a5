"""Actions inside packages: ``/api/v1/namespaces/{ns}/actions/{pkg}/{name}`` (PUT, GET, DELETE,
POST to invoke) and ``.../actions/{pkg}/`` (list).

An action of package ``/guest/pkg`` is stored as an action of the namespace ``guest/pkg``, so
its path ``guest/pkg/name`` flows unchanged into activation records and rules. Writes go to the
caller's own, real packages (not bindings); reads and invokes may also reach published packages
of other namespaces, directly or through a binding. Invoke parameters are layered
package < binding < action < request."""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from bus.ids import now_ms
from bus.models import ActionDoc, ActionExec, KeyValue, PackageDoc
from bus.requests import ParametersNotAllowed, build_payload
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
from gateway.auth import identity, namespace, path_namespace, reads_other_namespaces
from gateway.entities import refuse_overwrite, store_document
from gateway.errors import (
    NOT_FOUND,
    PARAMETERS_NOT_ALLOWED,
    ApiError,
    malformed,
    transaction_id,
)
from gateway.invoke import ACTIVATION_ID_HEADER, activate, answer, timeout_param
from gateway.jsonio import json_response
from gateway.package_access import ResolvedPackage, get_package, resolve_for_read
from gateway.package_docs import NOT_ALLOWED_ON_BINDING
from gateway.sequence_docs import actions_parameter, resolve_components
from gateway.state import LIMITS, SETTINGS, STORE
from gateway.validation import (
    bool_param,
    check_entity_name,
    list_window,
    parse_json,
    read_body,
    read_object,
)

ACTIONS = "actions"


def _package_and_name(request: web.Request) -> tuple[str, str]:
    return (
        check_entity_name(request.match_info["pkg"]),
        check_entity_name(request.match_info["name"]),
    )


async def _own_package(store: Store, ns: str, pkg: str) -> PackageDoc:
    """The caller's real package, where actions may be written."""
    doc = await get_package(store, ns, pkg)
    if doc is None:
        raise ApiError(404, NOT_FOUND)
    if doc.binding is not None:
        raise ApiError(400, NOT_ALLOWED_ON_BINDING)
    return doc


async def _resolved_action(
    request: web.Request, pkg: str, name: str, ns: str | None = None
) -> tuple[ResolvedPackage, ActionDoc]:
    store = request.app[STORE]
    resolved = await resolve_for_read(
        store, namespace(request), ns or path_namespace(request), pkg
    )
    doc = await store.get_action(resolved.actions_namespace, name)
    if doc is None:
        raise ApiError(404, NOT_FOUND)
    return resolved, doc


async def _code_of(store: Store, doc: ActionDoc) -> str | None:
    return await store.get_code(doc.exec.code_digest) if doc.exec.code_digest else None


async def _store_exec(store: Store, spec: ExecPut) -> ActionExec:
    # As gateway.actions stores it: a sequence keeps its components and has no code.
    if spec.components is not None:
        return ActionExec(kind=spec.kind, components=spec.components)
    digest = await store.put_code(spec.code)
    return ActionExec(
        kind=spec.kind, code_digest=digest, code_size=spec.code_size,
        binary=is_binary_code(spec.code), main=spec.main,
    )


async def put_packaged_action(request: web.Request) -> web.Response:
    pkg, name = _package_and_name(request)
    overwrite = bool_param(request, "overwrite")
    limits = request.app[LIMITS]
    store = request.app[STORE]
    package = await _own_package(store, namespace(request), pkg)
    put = parse_action_put(await read_object(request, limits.request_bytes), limits)

    action_ns = package.path
    if put.exec is not None and put.exec.components is not None:
        components = await resolve_components(
            store, put.exec.components, caller_ns=package.namespace, self_owner=action_ns,
            self_name=name)
        put = replace(put, exec=replace(put.exec, components=components),
                      parameters=actions_parameter(components))
    existing = await store.get_action(action_ns, name)
    refuse_overwrite(existing, overwrite)
    updated = now_ms()
    if existing is None:
        if put.exec is None:
            raise ApiError(400, "exec undefined")
        doc = created_doc(action_ns, name, put, await _store_exec(store, put.exec), updated)
    else:
        new_exec = await _store_exec(store, put.exec) if put.exec is not None else None
        doc = updated_doc(existing, put, new_exec, updated)
    await store_document(request, ACTIONS, action_ns, name, doc, updated, replaces=existing)
    code = put.exec.code if put.exec is not None else await _code_of(store, doc)
    return json_response(action_json(doc, code))


@reads_other_namespaces
async def get_packaged_action(request: web.Request) -> web.Response:
    pkg, name = _package_and_name(request)
    include_code = bool_param(request, "code", default=True)
    resolved, doc = await _resolved_action(request, pkg, name)
    # As OpenWhisk shows it: the package's (and binding's) parameters under the action's own.
    merged = {key: KeyValue(key=key, value=value)
              for key, value in resolved.base_parameters().items()}
    merged.update((kv.key, kv) for kv in doc.parameters)
    shown = doc.model_copy(update={"parameters": list(merged.values())})
    code = await _code_of(request.app[STORE], doc) if include_code else None
    return json_response(action_json(shown, code, include_code=include_code))


async def delete_packaged_action(request: web.Request) -> web.Response:
    pkg, name = _package_and_name(request)
    store = request.app[STORE]
    package = await _own_package(store, namespace(request), pkg)
    doc = await store.delete_entity(ACTIONS, package.path, name, ActionDoc)
    if doc is None:
        raise ApiError(404, NOT_FOUND)
    return json_response(action_json(doc, await _code_of(store, doc)))


@reads_other_namespaces
async def list_packaged_actions(request: web.Request) -> web.Response:
    pkg = check_entity_name(request.match_info["pkg"])
    store = request.app[STORE]
    window = list_window(request, ACTIONS, request.app[LIMITS])
    resolved = await resolve_for_read(store, namespace(request), path_namespace(request), pkg)
    if window.count:
        count = await store.count_entities(ACTIONS, resolved.actions_namespace)
        return json_response({ACTIONS: count})
    docs = await store.list_entities(
        ACTIONS, resolved.actions_namespace, ActionDoc, skip=window.skip, limit=window.limit
    )
    return json_response([action_summary(doc) for doc in docs])


@reads_other_namespaces
async def invoke_packaged_action(request: web.Request) -> web.Response:
    pkg, name = _package_and_name(request)
    return await invoke_in_package(request, path_namespace(request), pkg, name)


async def invoke_in_package(request: web.Request, ns: str, pkg: str, name: str) -> web.Response:
    """Invoke ``/ns/pkg/name`` (also reached from the built-in feeds' route for catalog
    actions of ``whisk.system``)."""
    app = request.app
    caller = identity(request)
    blocking = bool_param(request, "blocking")
    result_only = bool_param(request, "result")
    timeout_ms = timeout_param(request)
    args = parse_json(await read_body(request, app[LIMITS].payload_bytes))
    resolved, doc = await _resolved_action(request, pkg, name, ns)
    if args is not None and not isinstance(args, dict | list):
        raise malformed("Object or array expected")
    try:
        payload = build_payload(doc, args, base=resolved.base_parameters())
    except ParametersNotAllowed as exc:
        raise ApiError(400, PARAMETERS_NOT_ALLOWED) from exc

    max_wait_ms = app[SETTINGS].max_blocking_wait_ms
    wait_ms = min(timeout_ms, max_wait_ms) if timeout_ms is not None else max_wait_ms
    activation_id, record = await activate(
        app, doc, payload, namespace=caller.namespace, api_key=caller.api_key,
        tid=transaction_id(request), wait_ms=wait_ms if blocking else None,
    )
    headers = {ACTIVATION_ID_HEADER: activation_id}
    if record is None:
        return json_response({"activationId": activation_id}, status=202, headers=headers)
    return answer(record, result_only, headers)
