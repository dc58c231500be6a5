"""Actions inside packages: ``/api/v1/namespaces/{ns}/actions/{pkg}/{name}`` (PUT, GET, DELETE,
POST to invoke) and ``.../actions/{pkg}/`` (list).

An action of package ``/guest/pkg`` is stored as an action of the namespace ``guest/pkg``, so
its path ``guest/pkg/name`` flows unchanged into activation records and rules. Writes go to the
caller's own, real packages (not bindings); reads and invokes may also reach published packages
of other namespaces, directly or through a binding. Invoke parameters are layered
package < binding < action < request."""

from __future__ import annotations

from aiohttp import web

from bus.models import ActionDoc, KeyValue, PackageDoc
from bus.store import Store
from gateway.action_docs import (
    action_json,
    action_summary,
    parse_action_put,
)
from gateway.actions import code_of, write_action
from gateway.auth import namespace, path_namespace, reads_other_namespaces
from gateway.bodies import read_object
from gateway.errors import (
    NOT_FOUND,
    ApiError,
)
from gateway.invoke import InvokeRequest, run_invocation
from gateway.jsonio import json_response
from gateway.package_access import ResolvedPackage, get_package, resolve_for_read
from gateway.package_docs import NOT_ALLOWED_ON_BINDING
from gateway.state import LIMITS, STORE
from gateway.validation import bool_param, check_entity_name, list_window

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


async def put_packaged_action(request: web.Request) -> web.Response:
    pkg, name = _package_and_name(request)
    overwrite = bool_param(request, "overwrite")
    limits = request.app[LIMITS]
    store = request.app[STORE]
    package = await _own_package(store, namespace(request), pkg)
    put = parse_action_put(await read_object(request, limits.request_bytes), limits)

    return await write_action(request, put, action_ns=package.path, name=name,
                              caller_ns=package.namespace, overwrite=overwrite)


@reads_other_namespaces
async def get_packaged_action(request: web.Request) -> web.Response:
    pkg, name = _package_and_name(request)
    include_code = bool_param(request, "code", default=True)
    resolved, doc = await _resolved_action(request, pkg, name)
    # As OpenWhisk shows it: the package's (and binding's) parameters under the action's own.
    merged = {key: KeyValue(key=key, value=value)
              for key, value in resolved.base_parameters().items()}
    # Init parameters are the owner's secrets (they reach only the container's environment):
    # a reader of a published package does not see them.
    owner = doc.namespace.split("/", 1)[0] == namespace(request)
    merged.update((kv.key, kv) for kv in doc.parameters if owner or not kv.init)
    shown = doc.model_copy(update={"parameters": list(merged.values())})
    code = await code_of(request.app[STORE], doc) if include_code else None
    return json_response(action_json(shown, code, include_code=include_code))


async def delete_packaged_action(request: web.Request) -> web.Response:
    pkg, name = _package_and_name(request)
    store = request.app[STORE]
    package = await _own_package(store, namespace(request), pkg)
    doc = await store.delete_entity(ACTIONS, package.path, name, ActionDoc)
    if doc is None:
        raise ApiError(404, NOT_FOUND)
    return json_response(action_json(doc, await code_of(store, doc)))


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
    invocation = await InvokeRequest.read(request)
    resolved, doc = await _resolved_action(request, pkg, name, ns)
    return await run_invocation(request, doc, invocation, base=resolved.base_parameters(),
                                binding=resolved.binding_path)
