"""Package resolution (``bus.resolution``) with the gateway's answers: 404 for a missing
package of the caller's own namespace, 403 for another namespace's package the caller may not
read, whether it exists or not (OpenWhisk's entitlement check answers the same way)."""

from __future__ import annotations

from bus.models import PackageDoc
from bus.resolution import (
    ResolutionError,
    ResolvedPackage,
    Unresolved,
    get_package,
    readable,
    resolve_binding,
    resolve_package,
    unreadable,
)
from bus.store import Store
from gateway.errors import FORBIDDEN, NOT_FOUND, ApiError

__all__ = [
    "ResolvedPackage",
    "get_package",
    "readable",
    "readable_package",
    "resolve_binding_for_read",
    "resolve_for_read",
]


def api_error(exc: ResolutionError) -> ApiError:
    if exc.reason is Unresolved.FORBIDDEN:
        return ApiError(403, FORBIDDEN)
    return ApiError(404, NOT_FOUND)


async def readable_package(store: Store, caller_ns: str, ns: str, name: str) -> PackageDoc:
    """The package (or binding) ``/ns/name`` itself, unresolved."""
    doc = await get_package(store, ns, name)
    if doc is None or not readable(doc, caller_ns):
        raise api_error(unreadable(caller_ns, ns))
    return doc


async def resolve_binding_for_read(
    store: Store, caller_ns: str, doc: PackageDoc
) -> ResolvedPackage:
    try:
        return await resolve_binding(store, caller_ns, doc)
    except ResolutionError as exc:
        raise api_error(exc) from None


async def resolve_for_read(store: Store, caller_ns: str, ns: str, name: str) -> ResolvedPackage:
    try:
        return await resolve_package(store, caller_ns, ns, name)
    except ResolutionError as exc:
        raise api_error(exc) from None
