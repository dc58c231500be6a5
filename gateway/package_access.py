"""Who may see which package, and what a binding resolves to.

A namespace's own packages are readable and writable by it; other namespaces' packages are
readable (and their actions invocable) only when published. A binding is resolved to the
package it binds, which must itself be readable by the caller."""

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


async def readable_package(store: Store, caller_ns: str, ns: str, name: str) -> PackageDoc:
    """The package (or binding) ``/ns/name``: 404 if missing, 403 if not the caller's and
    not published."""
    doc = await get_package(store, ns, name)
    if doc is None:
        raise ApiError(404, NOT_FOUND)
    if not readable(doc, caller_ns):
        raise ApiError(403, FORBIDDEN)
    return doc


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
    if bound is None:
        raise ApiError(404, NOT_FOUND)
    if not readable(bound, caller_ns):
        raise ApiError(403, FORBIDDEN)
    return ResolvedPackage(bound, doc)


async def resolve_for_read(store: Store, caller_ns: str, ns: str, name: str) -> ResolvedPackage:
    doc = await readable_package(store, caller_ns, ns, name)
    return await resolve_binding(store, caller_ns, doc)
