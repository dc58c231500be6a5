"""Which action a path names and what it inherits (OpenWhisk's
``resolveActionAndMergeParameters``): one definition for the gateway (invokes, rule and
sequence checks) and the initializer (rule fan-out, sequence components), so an action reached
through a rule or a sequence gets the same package and binding parameters as a direct invoke.

A namespace's own packages are readable by it; other namespaces' packages only when published.
A binding resolves to the package it binds, which must itself be readable by the caller.
Another namespace's package the caller may not read is ``FORBIDDEN`` whether it exists or not,
so no answer tells a private package from a missing one; only in the caller's own namespace is
a missing package ``MISSING``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from bus.models import ActionDoc, PackageDoc
from bus.store import Store

PACKAGES = "packages"


class Unresolved(Enum):
    MISSING = "missing"
    FORBIDDEN = "forbidden"


class ResolutionError(LookupError):
    def __init__(self, reason: Unresolved) -> None:
        super().__init__(reason.value)
        self.reason = reason


def readable(doc: PackageDoc, caller_ns: str) -> bool:
    return doc.namespace == caller_ns or doc.publish


def unreadable(caller_ns: str, ns: str) -> ResolutionError:
    """For a package of ``ns`` the caller cannot read or that does not exist."""
    return ResolutionError(Unresolved.MISSING if ns == caller_ns else Unresolved.FORBIDDEN)


def inherited_parameters(package: PackageDoc, binding: PackageDoc | None) -> dict[str, Any]:
    """Package parameters overridden by the binding's (the base of an invoke's payload)."""
    params = {kv.key: kv.value for kv in package.parameters}
    if binding is not None:
        params.update((kv.key, kv.value) for kv in binding.parameters)
    return params


@dataclass(frozen=True)
class ResolvedPackage:
    """``package`` holds the actions; ``binding`` is the binding it was reached through."""

    package: PackageDoc
    binding: PackageDoc | None = None

    @property
    def actions_namespace(self) -> str:
        """Where the package's actions are stored (``ns/pkg``)."""
        return self.package.path

    @property
    def binding_path(self) -> str | None:
        """OpenWhisk's ``binding`` activation annotation: ``ns/binding``."""
        return self.binding.path if self.binding is not None else None

    def base_parameters(self) -> dict[str, Any]:
        return inherited_parameters(self.package, self.binding)


async def get_package(store: Store, ns: str, name: str) -> PackageDoc | None:
    return await store.get_entity(PACKAGES, ns, name, PackageDoc)


async def resolve_binding(store: Store, caller_ns: str, doc: PackageDoc) -> ResolvedPackage:
    if doc.binding is None:
        return ResolvedPackage(doc)
    bound = await get_package(store, doc.binding.namespace, doc.binding.name)
    if bound is None or not readable(bound, caller_ns):
        raise unreadable(caller_ns, doc.binding.namespace)
    return ResolvedPackage(bound, doc)


async def resolve_package(store: Store, caller_ns: str, ns: str, name: str) -> ResolvedPackage:
    """The package (or binding) ``/ns/name`` as ``caller_ns`` may read it."""
    doc = await get_package(store, ns, name)
    if doc is None or not readable(doc, caller_ns):
        raise unreadable(caller_ns, ns)
    return await resolve_binding(store, caller_ns, doc)


@dataclass(frozen=True)
class ResolvedAction:
    doc: ActionDoc
    base: dict[str, Any]  # package < binding parameters, under the action's own
    binding: str | None = None  # "ns/binding" when reached through a binding


async def resolve_action(store: Store, caller_ns: str, owner: str, name: str) -> ResolvedAction:
    """The action ``/owner/name`` (``owner`` is ``ns`` or ``ns/pkg``, ``pkg`` possibly a
    binding) as ``caller_ns`` may run it. Actions outside packages are the caller's own."""
    ns, _, package = owner.partition("/")
    if not package:
        if ns != caller_ns:
            raise ResolutionError(Unresolved.FORBIDDEN)
        doc = await store.get_action(ns, name)
        if doc is None:
            raise ResolutionError(Unresolved.MISSING)
        return ResolvedAction(doc, {})
    resolved = await resolve_package(store, caller_ns, ns, package)
    doc = await store.get_action(resolved.actions_namespace, name)
    if doc is None:
        raise ResolutionError(Unresolved.MISSING)
    return ResolvedAction(doc, resolved.base_parameters(), resolved.binding_path)


def split_path(path: str) -> tuple[str, str]:
    """``/ns/[pkg/]name`` -> (``ns`` or ``ns/pkg``, ``name``)."""
    owner, _, name = path.lstrip("/").rpartition("/")
    return owner, name
