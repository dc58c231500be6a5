"""What every entity's JSON shares (actions, triggers, rules): key-value lists, semantic
versions, ``publish``, and the fields common to every PUT body. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bus.models import KeyValue
from gateway.errors import malformed, too_large
from gateway.validation import GatewayLimits, json_size

_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def bump_patch(version: str) -> str:
    match = _SEMVER.match(version)
    if not match:
        return "0.0.1"
    major, minor, patch = (int(g) for g in match.groups())
    return f"{major}.{minor}.{patch + 1}"


# -- parameters and annotations -------------------------------------------------------------


def parse_key_values(value: Any, field_name: str) -> list[KeyValue]:
    if not isinstance(value, list):
        raise malformed(f"'{field_name}' must be an array of key-value pairs")
    pairs: list[KeyValue] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise malformed(f"'{field_name}' must be an array of key-value pairs")
        init = item.get("init")
        if init is not None and not isinstance(init, bool):
            raise malformed(f"'init' of parameter '{item['key']}' must be a boolean")
        pairs.append(KeyValue(key=item["key"], value=item.get("value"), init=init or None))
    return pairs


def key_values_size(pairs: list[KeyValue]) -> int:
    return sum(len(kv.key.encode()) + json_size(kv.value) for kv in pairs)


def key_value_json(kv: KeyValue) -> dict[str, Any]:
    # Not model_dump(exclude_none=True): a null value is still a value and must be shown.
    out: dict[str, Any] = {"key": kv.key, "value": kv.value}
    if kv.init:
        out["init"] = True
    return out


def key_values_json(pairs: list[KeyValue]) -> list[dict[str, Any]]:
    return [key_value_json(kv) for kv in pairs]


def merge_annotations(
    old: list[KeyValue], new: list[KeyValue], delete: list[str]
) -> list[KeyValue]:
    """Old annotations updated by new ones (new keys win, order kept), minus deleted keys."""
    merged = {kv.key: kv for kv in old}
    merged.update((kv.key, kv) for kv in new)
    return [kv for key, kv in merged.items() if key not in delete]


def checked_key_values(body: dict[str, Any], key: str, limits: GatewayLimits) -> list[KeyValue]:
    """``body[key]`` as key-value pairs within the parameter size limit."""
    pairs = parse_key_values(body[key], key)
    size = key_values_size(pairs)
    if size > limits.parameters_bytes:
        raise too_large(size, limits.parameters_bytes)
    return pairs


# -- the fields every PUT body may carry -----------------------------------------------------


@dataclass(frozen=True)
class CommonPut:
    """``annotations``, ``version`` and ``publish`` of a PUT body; None means "not given"."""

    annotations: list[KeyValue] | None = None
    version: str | None = None
    publish: bool | None = None


def parse_version(value: Any) -> str:
    if not isinstance(value, str) or not _SEMVER.match(value):
        raise malformed("'version' must be a semantic version 'major.minor.patch'")
    return value


def parse_publish(value: Any) -> bool:
    if not isinstance(value, bool):
        raise malformed("'publish' must be a boolean")
    return value


def parse_common_put(body: dict[str, Any], limits: GatewayLimits) -> CommonPut:
    return CommonPut(
        annotations=(
            checked_key_values(body, "annotations", limits)
            if body.get("annotations") is not None else None
        ),
        version=parse_version(body["version"]) if body.get("version") is not None else None,
        publish=parse_publish(body["publish"]) if body.get("publish") is not None else None,
    )
