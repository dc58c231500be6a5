"""``/api/v1/namespaces/{ns}/packages[/{name}]``: create/update (packages and bindings), get,
delete (``force``), list. Other namespaces' published packages can be read and listed."""

from __future__ import annotations

from aiohttp import web

from bus.ids import now_ms
from bus.models import ActionDoc, PackageBinding, PackageDoc
from bus.resolution import PACKAGES
from bus.store import Store
from gateway.auth import namespace, path_namespace, reads_other_namespaces
from gateway.bodies import read_object
from gateway.entities import list_response, not_found, refuse_overwrite, store_document
from gateway.errors import FORBIDDEN, NOT_FOUND, ApiError
from gateway.jsonio import json_response
from gateway.package_access import (
    get_package,
    readable,
    readable_package,
    resolve_binding_for_read,
)
from gateway.package_docs import (
    BINDING_MISSING,
    BINDING_OF_BINDING,
    PACKAGE_CANNOT_BECOME_BINDING,
    RESERVED_NAMES,
    created_package,
    not_empty,
    package_json,
    package_summary,
    package_with_contents,
    parse_package_put,
    reserved_name,
    updated_package,
)
from gateway.state import LIMITS, STORE
from gateway.validation import bool_param, check_entity_name, list_window

ACTIONS = "actions"
_EVERYTHING = 1_000_000  # a package's contents are listed whole (OpenWhisk's limit=0 view)


async def package_actions(store: Store, package: PackageDoc) -> list[ActionDoc]:
    return await store.list_entities(ACTIONS, package.path, ActionDoc, limit=_EVERYTHING)


async def _check_binding(store: Store, caller_ns: str, binding: PackageBinding) -> None:
    target = await get_package(store, binding.namespace, binding.name)
    if binding.namespace != caller_ns and (target is None or not readable(target, caller_ns)):
        raise ApiError(403, FORBIDDEN)  # the same for a private package and a missing one
    if target is None:
        raise ApiError(400, BINDING_MISSING)
    if target.binding is not None:
        raise ApiError(400, BINDING_OF_BINDING)


async def put_package(request: web.Request) -> web.Response:
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    if name in RESERVED_NAMES:
        raise reserved_name(name)
    overwrite = bool_param(request, "overwrite")
    limits = request.app[LIMITS]
    store = request.app[STORE]
    put = parse_package_put(await read_object(request, limits.request_bytes), ns, limits)

    existing = await get_package(store, ns, name)
    refuse_overwrite(existing, overwrite)
    if put.binding is not None:
        if existing is not None and existing.binding is None:
            raise ApiError(409, PACKAGE_CANNOT_BECOME_BINDING)
        await _check_binding(store, ns, put.binding)
    updated = now_ms()
    if existing is None:
        doc = created_package(ns, name, put, updated)
    else:
        doc = updated_package(existing, put, updated)
    await store_document(request, PACKAGES, ns, name, doc, updated, replaces=existing)
    return json_response(package_json(doc))


@reads_other_namespaces
async def get_package_handler(request: web.Request) -> web.Response:
    caller_ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    store = request.app[STORE]
    doc = await readable_package(store, caller_ns, path_namespace(request), name)
    resolved = await resolve_binding_for_read(store, caller_ns, doc)
    actions = await package_actions(store, resolved.package)
    return json_response(package_with_contents(doc, resolved.binding and resolved.package, actions))


async def delete_package(request: web.Request) -> web.Response:
    ns = namespace(request)
    name = check_entity_name(request.match_info["name"])
    force = bool_param(request, "force")
    store = request.app[STORE]
    doc = await get_package(store, ns, name)
    if doc is None:
        raise await not_found(request, PACKAGES, ns, name)
    if doc.binding is None:  # a binding holds no actions: always safe to remove
        count = await store.count_entities(ACTIONS, doc.path)
        if count and not force:
            raise not_empty(count)
        for action in await package_actions(store, doc):
            await store.delete_entity(ACTIONS, doc.path, action.name, ActionDoc)
    deleted = await store.delete_entity(PACKAGES, ns, name, PackageDoc)
    if deleted is None:
        raise ApiError(404, NOT_FOUND)
    return json_response(package_json(deleted))


@reads_other_namespaces
async def list_packages(request: web.Request) -> web.Response:
    """The caller's packages, or another namespace's published ones."""
    ns = path_namespace(request)
    if ns == namespace(request):
        return await list_response(request, PACKAGES, PackageDoc, package_summary)
    window = list_window(request, PACKAGES, request.app[LIMITS])
    docs = await request.app[STORE].list_entities(PACKAGES, ns, PackageDoc, limit=_EVERYTHING)
    public = [doc for doc in docs if doc.publish]
    if window.count:
        return json_response({PACKAGES: len(public)})
    page = public[window.skip:window.skip + window.limit]
    return json_response([package_summary(doc) for doc in page])
