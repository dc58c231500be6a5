"""Pure parts of the gateway: action documents, merge rules, validation helpers."""

from __future__ import annotations

import random
import re

import pytest

from bus.models import ActionDoc, ActionExec, KeyValue, Limits
from bus.requests import truthy
from gateway.action_docs import (
    ActionPut,
    amend_annotations,
    bump_patch,
    is_binary_code,
    merge_annotations,
    parse_action_put,
    parse_limits,
    updated_doc,
)
from gateway.auth import parse_basic
from gateway.errors import ApiError
from gateway.validation import GatewayLimits, check_entity_name, is_entity_name

# OpenWhisk's own pattern (ent/Exec.scala), to check ours against.
_OPENWHISK_BASE64 = re.compile(
    r"^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{4}|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2}==)$"
)


def _openwhisk_is_binary(code: str) -> bool:
    text = code.strip()
    return len(text) > 0 and len(text) % 4 == 0 and bool(_OPENWHISK_BASE64.match(text))


def test_binary_detection_matches_openwhisk() -> None:
    rng = random.Random(7)
    alphabet = "AB+/=a9 \n#"
    samples = ["", "    ", "UEsDBA==", "UEsDBA=", "AAA=", "AA==", "A===", "====", "A=A=",
               "def main(a): return a", "abcd\n", " abcdefgh "]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
                for _ in range(5000)]
    for sample in samples:
        assert is_binary_code(sample) == _openwhisk_is_binary(sample), repr(sample)


def test_versions_and_truthiness() -> None:
    assert bump_patch("0.0.1") == "0.0.2"
    assert bump_patch("1.9.9") == "1.9.10"
    assert [truthy(v) for v in (True, 1, "x", {}, [])] == [True] * 5
    assert [truthy(v) for v in (False, 0, "", None, 0.0)] == [False] * 5


def test_annotation_merge_and_system_annotations() -> None:
    old = [KeyValue(key="a", value=1), KeyValue(key="b", value=1)]
    new = [KeyValue(key="b", value=2), KeyValue(key="c", value=3)]
    merged = merge_annotations(old, new, delete=["a"])
    assert [(kv.key, kv.value) for kv in merged] == [("b", 2), ("c", 3)]
    created = amend_annotations([KeyValue(key="exec", value="old")], "python:3.11", create=True)
    assert [(kv.key, kv.value) for kv in created] == [
        ("provide-api-key", False), ("exec", "python:3.11")]
    kept = amend_annotations([KeyValue(key="provide-api-key", value=True)], "k", create=True)
    assert [(kv.key, kv.value) for kv in kept] == [("provide-api-key", True), ("exec", "k")]


def test_update_keeps_what_is_not_given() -> None:
    old = ActionDoc(namespace="ns", name="a", version="0.0.3",
                    exec=ActionExec(kind="python:3.11", code_digest="d"),
                    parameters=[KeyValue(key="p", value=1)], limits=Limits(timeout=1000),
                    annotations=[KeyValue(key="exec", value="python:3.11")], updated=1)
    doc = updated_doc(old, ActionPut(limits={"memory": 512}, publish=True), None, updated=2)
    assert doc.version == "0.0.4" and doc.exec == old.exec and doc.parameters == old.parameters
    assert doc.limits == Limits(timeout=1000, memory=512) and doc.publish is True
    assert doc.updated == 2


@pytest.mark.parametrize(("limits", "message"), [
    ({"timeout": 99}, "Timeout 99 milliseconds below allowed threshold of 100 milliseconds"),
    ({"memory": 513}, "Memory 513 MB exceeds allowed threshold of 512 MB"),
    ({"logs": -1}, "Log size -1 MB below allowed threshold of 0 MB"),
    ({"concurrency": 0}, "concurrency 0 below allowed threshold of 1"),
    ({"memory": 200.5}, "memory limit must be whole number"),
    ({"timeout": "1s"}, "time limit malformed"),
    ({"logs": True}, "log limit malformed"),
])
def test_limit_messages(limits: dict[str, object], message: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_limits(limits)
    assert (caught.value.status, caught.value.message) == (400, message)


def test_limits_accept_whole_floats_and_ignore_unknown_fields() -> None:
    assert parse_limits({"memory": 256.0, "instances": 5}) == {"memory": 256}


def test_put_body_shapes() -> None:
    limits = GatewayLimits()
    with pytest.raises(ApiError):
        parse_action_put({"parameters": {"k": "v"}}, limits)
    with pytest.raises(ApiError):
        parse_action_put({"version": "1.0"}, limits)
    put = parse_action_put({"parameters": [{"key": "k", "value": None, "init": True}],
                            "namespace": "ignored"}, limits)
    assert put.parameters == [KeyValue(key="k", value=None, init=True)]


def test_entity_names() -> None:
    for good in ("a", "_x", "hello world.v2", "a@b&c-d", "x" * 256):
        assert is_entity_name(good) and check_entity_name(good) == good
    for bad in ("", " a", "a ", "-a", "a/b", "é", "a$"):
        assert not is_entity_name(bad)


def test_basic_credentials() -> None:
    assert parse_basic(None) is None
    assert parse_basic("Bearer abc") is None
    assert parse_basic("Basic dTprOmV5") == ("u", "k:ey")
    with pytest.raises(ApiError):
        parse_basic("Basic bm9jb2xvbg==")  # "nocolon"
