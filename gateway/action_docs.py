"""Actions between OpenWhisk's JSON and ``bus.models.ActionDoc``: the PUT body validated,
create/update merge rules, system annotations, and the GET/list shapes. Pure functions.
(What every entity shares lives in ``gateway.entity_docs``.)"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from bus.models import ActionDoc, ActionExec, KeyValue, Limits
from bus.requests import PROVIDE_API_KEY, SEQUENCE
from gateway.entity_docs import (
    bump_patch,
    checked_key_values,
    key_values_json,
    merge_annotations,
    parse_common_put,
)
from gateway.errors import ApiError, malformed, too_large
from gateway.sequence_docs import parse_components
from gateway.validation import GatewayLimits
from runtimes.kinds import BLACKBOX, resolve_kind, supported_kinds

EXEC_ANNOTATION = "exec"
# Docker's reference grammar, simplified: lower-case path components, an optional tag, an
# optional digest. Images are never pulled; the engine must already have them.
IMAGE_REFERENCE = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?")
MAX_IMAGE_LENGTH = 255

# OpenWhisk's base64 test for "this code is a zip/jar" (ent/Exec.scala isBinaryCode), in an
# equivalent form that scans 48 MB without backtracking: with the length a multiple of four,
# "base64 chars then at most two '='" is exactly a sequence of complete base64 quads.
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def is_binary_code(code: str) -> bool:
    text = code.strip()
    return len(text) > 0 and len(text) % 4 == 0 and _BASE64.fullmatch(text) is not None


# -- annotations ----------------------------------------------------------------------------


def amend_annotations(annotations: list[KeyValue], kind: str, create: bool) -> list[KeyValue]:
    """System annotations: ``exec`` always rewritten; ``provide-api-key: false`` on create."""
    out = [kv for kv in annotations if kv.key != EXEC_ANNOTATION]
    if create and not any(kv.key == PROVIDE_API_KEY for kv in out):
        out.append(KeyValue(key=PROVIDE_API_KEY, value=False))
    out.append(KeyValue(key=EXEC_ANNOTATION, value=kind))
    return out


# -- limits ---------------------------------------------------------------------------------

# (JSON key, label in messages, unit, min, max); labels and wording from OpenWhisk's limits.
_LIMIT_RULES = (
    ("timeout", "Timeout", " milliseconds", 100, 300_000),
    ("memory", "Memory", " MB", 128, 512),
    ("logs", "Log size", " MB", 0, 10),
    ("concurrency", "concurrency", "", 1, 1),
)
_LIMIT_NOUN = {"timeout": "time", "memory": "memory", "logs": "log", "concurrency": "concurrency"}


def parse_limits(value: Any) -> dict[str, int]:
    """The limit fields a body gives, each whole and in range."""
    if not isinstance(value, dict):
        raise malformed("'limits' must be an object")
    given: dict[str, int] = {}
    for key, label, unit, low, high in _LIMIT_RULES:
        if key not in value or value[key] is None:
            continue
        raw = value[key]
        noun = _LIMIT_NOUN[key]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ApiError(400, f"{noun} limit malformed")
        if raw != int(raw):
            raise ApiError(400, f"{noun} limit must be whole number")
        number = int(raw)
        if number < low:
            raise ApiError(400, f"{label} {number}{unit} below allowed threshold of {low}{unit}")
        if number > high:
            raise ApiError(400, f"{label} {number}{unit} exceeds allowed threshold of {high}{unit}")
        given[key] = number
    return given


# -- the PUT body ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecPut:
    kind: str  # resolved, concrete
    code: str
    code_size: int  # bytes of UTF-8
    main: str | None
    components: list[str] | None = None  # a sequence's, as given (resolved at PUT)
    image: str | None = None  # a blackbox's


@dataclass(frozen=True)
class ActionPut:
    """A validated PUT body; None means "not given" (keep the old value on update)."""

    exec: ExecPut | None = None
    parameters: list[KeyValue] | None = None
    annotations: list[KeyValue] | None = None
    del_annotations: list[str] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)
    version: str | None = None
    publish: bool | None = None


def unsupported_kind(kind: str) -> ApiError:
    valid = "', '".join(supported_kinds())
    return ApiError(
        400,
        f"The specified runtime '{kind}' is not supported by this platform. "
        f"Valid values are: '{valid}'.",
    )


def parse_exec(value: Any, limits: GatewayLimits) -> ExecPut:
    if not isinstance(value, dict):
        raise malformed("'exec' must be an object")
    raw_kind = value.get("kind")
    if not isinstance(raw_kind, str):
        raise malformed("'kind' must be a string defined in 'exec'")
    if raw_kind == SEQUENCE:
        components = parse_components(value.get("components"))
        return ExecPut(kind=SEQUENCE, code="", code_size=0, main=None, components=components)
    image = None
    if raw_kind.strip().lower() == BLACKBOX:
        kind: str | None = BLACKBOX
        image = parse_image(value.get("image"))
    else:
        kind = resolve_kind(raw_kind)
    if kind is None:
        raise unsupported_kind(raw_kind.strip().lower())
    code = value.get("code", "" if image else None)
    if not isinstance(code, str):
        raise malformed(f"'code' must be a string defined in 'exec' for '{kind}' actions")
    size = len(code.encode())
    if size > limits.code_bytes:
        raise too_large(size, limits.code_bytes)
    main = value.get("main")
    if main is not None and not isinstance(main, str):
        raise malformed("'main' must be a string")
    return ExecPut(kind=kind, code=code, code_size=size, main=main or None, image=image)


def parse_image(value: Any) -> str:
    """A blackbox's image: a Docker reference (``name[:tag]`` or ``name@sha256:…``)."""
    if not isinstance(value, str) or not value.strip():
        raise malformed("'image' must be a string defined in 'exec' for 'blackbox' actions")
    image = value.strip()
    if len(image) > MAX_IMAGE_LENGTH or not IMAGE_REFERENCE.fullmatch(image):
        raise malformed(f"'{image[:MAX_IMAGE_LENGTH]}' is not a valid image name")
    return image


def parse_action_put(body: dict[str, Any], limits: GatewayLimits) -> ActionPut:
    """Validate a PUT body (``namespace``/``name`` in it are ignored, as OpenWhisk does)."""
    fields: dict[str, Any] = {}
    if body.get("exec") is not None:
        fields["exec"] = parse_exec(body["exec"], limits)
    if body.get("parameters") is not None:
        fields["parameters"] = checked_key_values(body, "parameters", limits)
    if body.get("delAnnotations") is not None:
        deleted = body["delAnnotations"]
        if not isinstance(deleted, list) or not all(isinstance(k, str) for k in deleted):
            raise malformed("'delAnnotations' must be an array of strings")
        fields["del_annotations"] = deleted
    if body.get("limits") is not None:
        fields["limits"] = parse_limits(body["limits"])
    common = parse_common_put(body, limits)
    return ActionPut(
        **fields, annotations=common.annotations, version=common.version, publish=common.publish
    )


def created_doc(
    ns: str, name: str, put: ActionPut, action_exec: ActionExec, updated: int
) -> ActionDoc:
    return ActionDoc(
        namespace=ns,
        name=name,
        version=put.version or "0.0.1",
        publish=bool(put.publish),
        exec=action_exec,
        parameters=put.parameters or [],
        limits=Limits(**put.limits),
        annotations=amend_annotations(put.annotations or [], action_exec.kind, create=True),
        updated=updated,
    )


def updated_doc(
    old: ActionDoc, put: ActionPut, action_exec: ActionExec | None, updated: int
) -> ActionDoc:
    """OpenWhisk's update: absent fields keep old values, the patch version is bumped unless
    given, parameters replaced wholesale, annotations and limits merged."""
    new_exec = action_exec or old.exec
    annotations = merge_annotations(old.annotations, put.annotations or [], put.del_annotations)
    return ActionDoc(
        namespace=old.namespace,
        name=old.name,
        version=put.version or bump_patch(old.version),
        publish=old.publish if put.publish is None else put.publish,
        exec=new_exec,
        parameters=old.parameters if put.parameters is None else put.parameters,
        limits=old.limits.model_copy(update=put.limits),
        annotations=amend_annotations(annotations, new_exec.kind, create=False),
        updated=updated,
    )


# -- answers --------------------------------------------------------------------------------


def action_json(doc: ActionDoc, code: str | None, *, include_code: bool = True) -> dict[str, Any]:
    """OpenWhisk's WhiskAction JSON (GET, PUT and DELETE answers)."""
    exec_json: dict[str, Any] = {"kind": doc.exec.kind}
    if doc.exec.image is not None:
        exec_json["image"] = doc.exec.image
    if doc.exec.components is not None:
        exec_json["components"] = doc.exec.components
    elif include_code and (code or doc.exec.image is None):  # a blackbox's code is optional
        exec_json["code"] = code if code is not None else ""
    exec_json["binary"] = doc.exec.binary
    if doc.exec.main:
        exec_json["main"] = doc.exec.main
    return {
        "namespace": doc.namespace,
        "name": doc.name,
        "version": doc.version,
        "publish": doc.publish,
        "exec": exec_json,
        "parameters": key_values_json(doc.parameters),
        "limits": doc.limits.model_dump(),
        "annotations": key_values_json(doc.annotations),
        "updated": doc.updated,
    }


def action_summary(doc: ActionDoc) -> dict[str, Any]:
    """A list entry: no kind or code (clients read the kind from the ``exec`` annotation)."""
    return {
        "namespace": doc.namespace,
        "name": doc.name,
        "version": doc.version,
        "publish": doc.publish,
        "annotations": key_values_json(doc.annotations),
        "limits": doc.limits.model_dump(),
        "exec": {"binary": doc.exec.binary},
        "updated": doc.updated,
    }
