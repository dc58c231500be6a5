"""Packages between OpenWhisk's JSON and ``bus.models.PackageDoc``: the PUT body validated,
create/update merge rules, the ``binding`` annotation, and the GET/list shapes. Pure functions.
(OpenWhisk's ``ctl/Packages.scala`` and ``ent/WhiskPackage.scala``.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bus.models import ActionDoc, KeyValue, PackageBinding, PackageDoc
from gateway.entity_docs import (
    CommonPut,
    bump_patch,
    checked_key_values,
    key_values_json,
    parse_common_put,
)
from gateway.errors import ApiError, malformed
from gateway.validation import GatewayLimits, is_entity_name

RESERVED_NAMES = ("default",)  # /web/{ns}/default/{action} means "no package"
BINDING_ANNOTATION = "binding"
FEED_ANNOTATION = "feed"

BINDING_MISSING = "Binding references a package that does not exist."
BINDING_OF_BINDING = "Cannot bind to another package binding."
PACKAGE_CANNOT_BECOME_BINDING = "Resource is a package and cannot be converted into a binding."
NOT_ALLOWED_ON_BINDING = "Operation not permitted on package binding."


def reserved_name(name: str) -> ApiError:
    return ApiError(400, f"Package name '{name}' is reserved.")


def not_empty(count: int) -> ApiError:
    noun = "entity" if count == 1 else "entities"
    return ApiError(
        409,
        f"Package not empty (contains {count} {noun}). Set force param or delete package "
        "contents.",
    )


@dataclass(frozen=True)
class PackagePut:
    """A validated PUT body; None means "not given" (keep the old value on update)."""

    common: CommonPut
    parameters: list[KeyValue] | None = None
    binding: PackageBinding | None = None


def parse_binding(value: Any, caller_ns: str) -> PackageBinding | None:
    """``{"namespace", "name"}`` with ``_`` (or no namespace) meaning the caller's; ``{}`` is
    what a plain package carries, so it means "no binding"."""
    if not isinstance(value, dict):
        raise malformed("'binding' must be an object")
    if not value:
        return None
    ns, name = value.get("namespace") or "_", value.get("name")
    if not isinstance(ns, str) or not isinstance(name, str):
        raise malformed("'binding' must name a namespace and a package")
    ns = caller_ns if ns in ("_", "/_") else ns.strip("/")
    if not is_entity_name(name) or not all(is_entity_name(s) for s in ns.split("/")):
        raise ApiError(400, "The name of the entity contains illegal characters.")
    return PackageBinding(namespace=ns, name=name)


def parse_package_put(body: dict[str, Any], caller_ns: str, limits: GatewayLimits) -> PackagePut:
    parameters = (
        checked_key_values(body, "parameters", limits)
        if body.get("parameters") is not None else None
    )
    binding = parse_binding(body["binding"], caller_ns) if body.get("binding") is not None else None
    return PackagePut(common=parse_common_put(body, limits), parameters=parameters, binding=binding)


def _with_binding_annotation(
    annotations: list[KeyValue], binding: PackageBinding | None
) -> list[KeyValue]:
    # Always the controller's: a client cannot forge or drop it.
    out = [kv for kv in annotations if kv.key != BINDING_ANNOTATION]
    if binding is not None:
        out.append(KeyValue(key=BINDING_ANNOTATION, value=binding.model_dump()))
    return out


def created_package(ns: str, name: str, put: PackagePut, updated: int) -> PackageDoc:
    return PackageDoc(
        namespace=ns,
        name=name,
        version=put.common.version or "0.0.1",
        publish=bool(put.common.publish),
        binding=put.binding,
        parameters=put.parameters or [],
        annotations=_with_binding_annotation(put.common.annotations or [], put.binding),
        updated=updated,
    )


def updated_package(old: PackageDoc, put: PackagePut, updated: int) -> PackageDoc:
    """OpenWhisk's package update: given fields replace old ones (annotations too, unlike
    actions), the patch version is bumped unless given."""
    binding = put.binding or old.binding
    annotations = put.common.annotations if put.common.annotations is not None else old.annotations
    return PackageDoc(
        namespace=old.namespace,
        name=old.name,
        version=put.common.version or bump_patch(old.version),
        publish=old.publish if put.common.publish is None else put.common.publish,
        binding=binding,
        parameters=old.parameters if put.parameters is None else put.parameters,
        annotations=_with_binding_annotation(annotations, binding),
        updated=updated,
    )


def package_json(doc: PackageDoc) -> dict[str, Any]:
    """OpenWhisk's WhiskPackage JSON (PUT and DELETE answers); ``binding`` is ``{}`` for a
    package."""
    return {
        "namespace": doc.namespace,
        "name": doc.name,
        "version": doc.version,
        "publish": doc.publish,
        "binding": doc.binding.model_dump() if doc.binding is not None else {},
        "parameters": key_values_json(doc.parameters),
        "annotations": key_values_json(doc.annotations),
        "updated": doc.updated,
    }


def package_with_contents(
    doc: PackageDoc, bound: PackageDoc | None, actions: list[ActionDoc]
) -> dict[str, Any]:
    """The GET answer: for a binding, the binding with the bound package's parameters under
    its own; with the (bound) package's actions, feeds (actions annotated ``feed``) apart."""
    out = package_json(doc)
    if bound is not None:
        merged = {kv.key: kv for kv in bound.parameters}
        merged.update((kv.key, kv) for kv in doc.parameters)
        out["parameters"] = key_values_json(list(merged.values()))
    listed = [
        {"name": a.name, "version": a.version, "annotations": key_values_json(a.annotations)}
        for a in actions
    ]
    is_feed = [a.annotation(FEED_ANNOTATION) is not None for a in actions]
    out["actions"] = [item for item, feed in zip(listed, is_feed, strict=True) if not feed]
    out["feeds"] = [item for item, feed in zip(listed, is_feed, strict=True) if feed]
    return out


def package_summary(doc: PackageDoc) -> dict[str, Any]:
    """A list entry: ``binding`` is ``false`` for a package (OpenWhisk's view)."""
    return {
        "namespace": doc.namespace,
        "name": doc.name,
        "version": doc.version,
        "publish": doc.publish,
        "annotations": key_values_json(doc.annotations),
        "binding": doc.binding.model_dump() if doc.binding is not None else False,
        "updated": doc.updated,
    }
