"""Sequence actions at create time (OpenWhisk's ``Actions.scala`` sequence checks): component
names resolved and fully qualified, each checked to exist, self-reference and the atomic
length limit refused with OpenWhisk's messages."""

from __future__ import annotations

from typing import Any

from bus.models import ActionDoc, KeyValue
from bus.requests import SEQUENCE
from bus.resolution import ResolutionError, Unresolved, resolve_action, split_path
from bus.store import Store
from gateway.errors import FORBIDDEN, ApiError, malformed
from gateway.validation import is_entity_name

NO_COMPONENT = "No component specified for the sequence."
TOO_MANY = "Too many actions in the sequence."
SELF_REFERENCE = "Sequence may not refer to itself."
COMPONENT_MISSING = "Sequence component does not exist."
MAX_ATOMIC_ACTIONS = 50  # whisk.actionSequence.maxLength
ACTIONS_PARAMETER = "_actions"


def parse_components(value: Any) -> list[str]:
    """The raw ``exec.components`` list of a PUT body."""
    if value is None or value == []:
        raise ApiError(400, NO_COMPONENT)
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise malformed("'components' must be an array of strings")
    return value


def qualify(component: str, caller_ns: str) -> str:
    """``/ns/[pkg/]name``, ``[pkg/]name`` or ``/_/...`` -> ``/ns/[pkg/]name``."""
    text = component.strip()
    if text.startswith("/"):
        parts = text[1:].split("/")
        if len(parts) not in (2, 3):
            raise malformed(f"'{component}' is not a fully qualified action name")
        if parts[0] == "_":
            parts[0] = caller_ns
    else:
        parts = [caller_ns, *text.split("/")]
        if len(parts) not in (2, 3):
            raise malformed(f"'{component}' is not a valid action name")
    if not all(is_entity_name(p) for p in parts):
        raise malformed(f"'{component}' is not a valid action name")
    return "/" + "/".join(parts)


async def _atomic_count(
    store: Store, path: str, self_path: str, caller_ns: str, seen: frozenset[str]
) -> int:
    """Atomic actions under ``path``; a nested sequence's components are resolved as its
    owner's, who vouched for them when it was written."""
    owner, name = split_path(path)
    try:
        doc = (await resolve_action(store, caller_ns, owner, name)).doc
    except ResolutionError as exc:
        # Another namespace's component is refused before its existence is looked at, so a
        # private component and a missing one get the same answer.
        if exc.reason is Unresolved.FORBIDDEN:
            raise ApiError(403, FORBIDDEN) from None
        raise ApiError(400, COMPONENT_MISSING) from None
    if doc.exec.kind != SEQUENCE:
        return 1
    if path in seen:  # a cycle that does not pass through the new sequence
        raise ApiError(400, SELF_REFERENCE)
    inner_owner = doc.namespace.split("/", 1)[0]
    total = 0
    for inner in doc.exec.components or []:
        if inner == self_path:
            raise ApiError(400, SELF_REFERENCE)
        total += await _atomic_count(store, inner, self_path, inner_owner, seen | {path})
    return total


async def resolve_components(
    store: Store, raw: list[str], *, caller_ns: str, self_owner: str, self_name: str
) -> list[str]:
    self_path = f"/{self_owner}/{self_name}"
    components = [qualify(c, caller_ns) for c in raw]
    if self_path in components:
        raise ApiError(400, SELF_REFERENCE)
    if len(components) > MAX_ATOMIC_ACTIONS:
        raise ApiError(400, TOO_MANY)
    total = 0
    for path in components:
        total += await _atomic_count(store, path, self_path, caller_ns, frozenset())
        if total > MAX_ATOMIC_ACTIONS:
            raise ApiError(400, TOO_MANY)
    return components


def actions_parameter(components: list[str]) -> list[KeyValue]:
    """A sequence's parameters are replaced by its component list (OpenWhisk's internal
    ``_actions``); any others given are dropped."""
    return [KeyValue(key=ACTIONS_PARAMETER, value=components)]


def is_sequence(doc: ActionDoc) -> bool:
    return doc.exec.kind == SEQUENCE
