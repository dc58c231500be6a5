"""Who may see which package, and what a binding resolves to.

A namespace's own packages are readable and writable by it; other namespaces' packages are
readable (and their actions invocable) only when published. A binding is resolved to the
package it binds, which must itself be readable by the caller.

Another namespace's package the caller may not read is refused with 403 whether it exists or
not, so the answer never tells a private package from a missing one (OpenWhisk's entitlement
check answers the same way); in the caller's own namespace a missing package is 404."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bus.models import PackageDoc
from bus.store import Store
from gateway.errors import FORBIDDEN, NOT_FOUND, ApiError
from gateway.package_docs import PACKAGES, inherited_parameters


async def get_package(store: Store, ns: str, name: str) -> PackageDoc | None:
    return await store.get_entity(PACKAGES, ns, name, PackageDoc)


def readable(doc: PackageDoc, caller_ns: str) -> bool:
    return doc.namespace == caller_ns or doc.publish


def unreadable(caller_ns: str, ns: str) -> ApiError:
    """The answer for a package of ``ns`` the caller cannot read or that does not exist."""
    return ApiError(404, NOT_FOUND) if ns == caller_ns else ApiError(403, FORBIDDEN)


async def readable_package(store: Store, caller_ns: str, ns: str, name: str) -> PackageDoc:
    """The package (or binding) ``/ns/name``; 404 if the caller's own is missing, 403 for
    another namespace's that is missing or not published."""
    doc = await get_package(store, ns, name)
    if doc is None or not readable(doc, caller_ns):
        raise unreadable(caller_ns, ns)
    return doc


async def may_use_actions_of(store: Store, caller_ns: str, owner: str) -> bool:
    """Whether the caller may reference (in a rule or a sequence) the actions stored under
    ``owner`` (``ns`` or ``ns/pkg``): its own, or those of a published package."""
    ns, _, package = owner.partition("/")
    if ns == caller_ns:
        return True
    if not package:
        return False
    doc = await get_package(store, ns, package)
    return doc is not None and doc.binding is None and doc.publish


@dataclass(frozen=True)
class ResolvedPackage:
    """``package`` holds the actions; ``binding`` is the binding it was reached through."""

    package: PackageDoc
    binding: PackageDoc | None = None

    @property
    def actions_namespace(self) -> str:
        """Where the package's actions are stored (``ns/pkg``)."""
        return self.package.path

    def base_parameters(self) -> dict[str, Any]:
        return inherited_parameters(self.package, self.binding)


async def resolve_binding(store: Store, caller_ns: str, doc: PackageDoc) -> ResolvedPackage:
    if doc.binding is None:
        return ResolvedPackage(doc)
    bound = await get_package(store, doc.binding.namespace, doc.binding.name)
    if bound is None or not readable(bound, caller_ns):
        raise unreadable(caller_ns, doc.binding.namespace)
    return ResolvedPackage(bound, doc)


async def resolve_for_read(store: Store, caller_ns: str, ns: str, name: str) -> ResolvedPackage:
    doc = await readable_package(store, caller_ns, ns, name)
    return await resolve_binding(store, caller_ns, doc)
