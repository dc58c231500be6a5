"""What an action inherits however it is reached, on the real cluster: through a package, a
binding, a rule, a sequence or a web URL, the action sees package < binding < action < caller
parameters, its record names the binding it was reached through, and the actions rules start
count against their namespace's throttles."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bus.models import NamespaceAuth, NamespaceLimits
from bus.store import Store
from initializer.fanout import rule_activation_id
from tests.cluster_fixtures import Cluster

NS = "/api/v1/namespaces/_"
# Returns its whole input, so the test sees exactly what it was given.
ECHO = "def main(args):\n    return args\n"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _params(**values: Any) -> list[dict[str, Any]]:
    return [{"key": k, "value": v} for k, v in values.items()]


def _annotation(record: dict[str, Any], key: str) -> Any:
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


async def _put(http: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.put(f"{NS}/{path}", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _record(http: aiohttp.ClientSession, aid: str, *, tries: int = 300) -> dict[str, Any]:
    for _ in range(tries):
        async with http.get(f"{NS}/activations/{aid}") as resp:
            if resp.status == 200:
                return await resp.json()
        await asyncio.sleep(0.1)
    raise AssertionError(f"no record for {aid}")


async def _trigger_outcomes(http: aiohttp.ClientSession, aid: str) -> list[dict[str, Any]]:
    record = await _record(http, aid)
    return [json.loads(line) for line in record["logs"]]


@pytest.fixture
async def layered(http: aiohttp.ClientSession) -> dict[str, str]:
    """A package with an echo action (each layer sets the keys it may override) and a binding
    of it."""
    pkg, bound = _name("pkg"), _name("bind")
    await _put(http, f"packages/{pkg}", {"parameters": _params(
        p="package", b="package", a="package", t="package", f="package")})
    await _put(http, f"actions/{pkg}/echo", {
        "exec": {"kind": "python:3.11", "code": ECHO},
        "parameters": _params(a="action", t="action", f="action"),
        "annotations": [{"key": "web-export", "value": True}]})
    await _put(http, f"packages/{bound}", {"binding": {"name": pkg},
                                           "parameters": _params(b="binding", a="binding")})
    return {"pkg": pkg, "bound": bound}


async def test_invoke_through_binding_annotates_the_record(
    http: aiohttp.ClientSession, layered: dict[str, str]
) -> None:
    async with http.post(f"{NS}/actions/{layered['bound']}/echo", params={"blocking": "true"},
                         json={"f": "invoke"}) as resp:
        assert resp.status == 200, await resp.text()
        record = await resp.json()
    assert record["response"]["result"] == {
        "p": "package", "b": "binding", "a": "action", "t": "action", "f": "invoke"}
    assert _annotation(record, "binding") == f"guest/{layered['bound']}"
    assert _annotation(record, "path") == f"guest/{layered['pkg']}/echo"

    async with http.post(f"{NS}/actions/{layered['pkg']}/echo",
                         params={"blocking": "true"}, json={}) as resp:
        direct = await resp.json()
    assert _annotation(direct, "binding") is None


async def test_rules_reach_packaged_and_bound_actions_with_their_parameters(
    http: aiohttp.ClientSession, layered: dict[str, str]
) -> None:
    trigger = _name("trg")
    await _put(http, f"triggers/{trigger}", {"parameters": _params(t="trigger", f="trigger")})
    for target in (layered["pkg"], layered["bound"]):
        await _put(http, f"rules/{_name('rule')}",
                   {"trigger": f"/_/{trigger}", "action": f"/_/{target}/echo"})
    async with http.post(f"{NS}/triggers/{trigger}", json={"f": "fire"}) as resp:
        assert resp.status == 202, await resp.text()
        fired = await resp.json()
    outcomes = await _trigger_outcomes(http, fired["activationId"])
    assert [o["success"] for o in outcomes] == [True, True], outcomes
    records = {o["action"]: await _record(http, o["activationId"]) for o in outcomes}
    for record in records.values():  # a fire over HTTP also passes its request headers
        assert record["response"]["result"].pop("__ow_headers")["content-type"] == (
            "application/json")
    # The trigger's parameters and the fire's payload are the invoke's arguments (OpenWhisk),
    # over the action's and its package's.
    in_package = records[f"guest/{layered['pkg']}/echo"]["response"]["result"]
    assert in_package == {"p": "package", "b": "package", "a": "action", "t": "trigger",
                          "f": "fire"}
    through_binding = records[f"guest/{layered['bound']}/echo"]
    assert through_binding["response"]["result"] == {
        "p": "package", "b": "binding", "a": "action", "t": "trigger", "f": "fire"}
    assert _annotation(through_binding, "binding") == f"guest/{layered['bound']}"


async def test_sequence_components_get_their_package_parameters(
    http: aiohttp.ClientSession, layered: dict[str, str]
) -> None:
    seq = _name("seq")
    await _put(http, f"actions/{seq}", {"exec": {"kind": "sequence", "components": [
        f"/_/{layered['pkg']}/echo", f"/_/{layered['bound']}/echo"]}})
    async with http.post(f"{NS}/actions/{seq}", params={"blocking": "true"},
                         json={"f": "invoke"}) as resp:
        assert resp.status == 200, await resp.text()
        record = await resp.json()
    # The second component gets the first's result as arguments: they win over every layer.
    first = await _record(http, record["logs"][0])
    assert first["response"]["result"] == {"p": "package", "b": "package", "a": "action",
                                           "t": "action", "f": "invoke"}
    second = await _record(http, record["logs"][1])
    assert _annotation(second, "binding") == f"guest/{layered['bound']}"
    assert _annotation(first, "binding") is None
    assert record["response"]["result"] == first["response"]["result"]


async def test_web_action_in_a_package_gets_package_parameters(
    cluster: Cluster, layered: dict[str, str]
) -> None:
    url = f"{cluster.api_host}/api/v1/web/guest/{layered['pkg']}/echo.json"
    async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as resp:
        assert resp.status == 200, await resp.text()
        result = await resp.json()
    assert {k: result[k] for k in ("p", "b", "a")} == {
        "p": "package", "b": "package", "a": "action"}
    assert result["__ow_method"] == "get"


@pytest.fixture
async def tenant(cluster: Cluster, store: Store) -> AsyncIterator[aiohttp.ClientSession]:
    """A namespace of its own, so its throttles can be set without touching guest's."""
    ns = f"thr-{uuid.uuid4().hex[:8]}"
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32), namespace=ns)
    await store.put_auth(auth)
    headers = {"Authorization": aiohttp.encode_basic_auth(auth.uuid, auth.key)}
    async with aiohttp.ClientSession(cluster.api_host, headers=headers) as http:
        yield http
    await store.clear_limits(ns)
    await store.keys.revoke(auth.uuid)


async def test_rule_activations_count_against_the_namespace_throttle(
    tenant: aiohttp.ClientSession, store: Store
) -> None:
    trigger = _name("trg")
    await _put(tenant, "actions/echo", {"exec": {"kind": "python:3.11", "code": ECHO}})
    await _put(tenant, f"triggers/{trigger}", {})
    await _put(tenant, f"rules/{_name('rule')}", {"trigger": f"/_/{trigger}", "action": "/_/echo"})
    async with tenant.get("/api/v1/namespaces") as resp:
        (ns,) = await resp.json()
    await store.set_limits(ns, NamespaceLimits(invocationsPerMinute=1, firesPerMinute=100))

    # Rate windows are calendar minutes: both fires must fall in the same one.
    if time.time() % 60 > 50:
        await asyncio.sleep(60.5 - time.time() % 60)
    fired = []
    for _ in range(2):
        async with tenant.post(f"{NS}/triggers/{trigger}", json={}) as resp:
            assert resp.status == 202, await resp.text()  # the fire itself is not throttled
            fired.append((await resp.json())["activationId"])

    (first,) = await _trigger_outcomes(tenant, fired[0])
    assert first["success"], first
    assert (await _record(tenant, first["activationId"]))["response"]["success"]
    # The second rule activation is over the namespace's rate: it waits for the next window
    # (back-pressure, not a failure), so neither it nor its trigger record exists yet.
    # That it is delivered then is the early scenario in test_throttle_backpressure.
    async with tenant.get(f"{NS}/triggers/{trigger}") as resp:
        (rule_key,) = (await resp.json())["rules"]
    waiting = rule_activation_id(fired[1], rule_key)
    await asyncio.sleep(3)
    for aid in (fired[1], waiting):
        async with tenant.get(f"{NS}/activations/{aid}") as resp:
            assert resp.status == 404, await resp.text()
