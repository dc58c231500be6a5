"""End to end on real parts: HTTP -> gateway -> RabbitMQ -> initializer -> RabbitMQ -> invoker
-> a Docker container -> Redis -> back. Each test reads the outcome the way a user would,
and where the user cannot see it (which container, which invoker) from the stored record."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp

from bus.broker import ACTIVATIONS, BATCH, Broker
from bus.ids import new_activation_id
from bus.models import ActivationBatch
from bus.requests import build_request
from bus.store import Store
from tests.cluster_fixtures import Cluster, wait_for_stem_cells

ACTIONS = "/api/v1/namespaces/_/actions"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _create(http: aiohttp.ClientSession, name: str, code: str, **extra: Any) -> dict:
    body = {"exec": {"kind": "python:3.11", "code": code}, **extra}
    async with http.put(f"{ACTIONS}/{name}", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _invoke(
    http: aiohttp.ClientSession, name: str, params: Any = None, **query: str
) -> tuple[int, Any]:
    q = {"blocking": "true", **query}
    async with http.post(f"{ACTIONS}/{name}", params=q, json=params or {}) as resp:
        return resp.status, await resp.json()


async def _record_when_ready(http: aiohttp.ClientSession, aid: str, timeout: float = 60) -> dict:
    """Asynchronous invokes are observed the way a user observes them: by GET."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        async with http.get(f"/api/v1/namespaces/_/activations/{aid}") as resp:
            if resp.status == 200:
                return await resp.json()
            assert resp.status == 404
        await asyncio.sleep(0.1)
    raise AssertionError(f"no record for {aid} within {timeout} s")


def _annotation(record: dict, key: str) -> Any:
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


GREET = 'def main(args):\n    return {"greeting": "Hello " + args.get("name", "stranger")}\n'


async def test_action_lifecycle(http: aiohttp.ClientSession) -> None:
    name = _name("life")
    created = await _create(http, name, GREET)
    assert created["version"] == "0.0.1" and created["exec"]["code"] == GREET
    async with http.get(f"{ACTIONS}/{name}") as resp:
        assert resp.status == 200 and (await resp.json())["name"] == name
    async with http.get(ACTIONS, params={"limit": "200"}) as resp:
        assert name in [a["name"] for a in await resp.json()]
    updated_code = GREET.replace("Hello", "Howdy")
    async with http.put(f"{ACTIONS}/{name}", params={"overwrite": "true"},
                        json={"exec": {"kind": "python:3", "code": updated_code}}) as resp:
        assert resp.status == 200 and (await resp.json())["version"] == "0.0.2"
    status, result = await _invoke(http, name, {"name": "Ann"}, result="true")
    assert (status, result) == (200, {"greeting": "Howdy Ann"})
    async with http.delete(f"{ACTIONS}/{name}") as resp:
        assert resp.status == 200
    async with http.get(f"{ACTIONS}/{name}") as resp:
        assert resp.status == 404
    status, body = await _invoke(http, name)
    assert status == 404 and body["error"] == "The requested resource does not exist."


async def test_blocking_invoke_returns_record_and_uses_a_stem_cell(
    http: aiohttp.ClientSession, store: Store, broker: Broker, cluster: Cluster
) -> None:
    # Earlier tests may have filled the pools with warm containers: wait until the invokers
    # reclaimed room and report a stem cell again.
    await wait_for_stem_cells(broker, cluster.invoker_ids, timeout=60, wanted=1)
    name = _name("greet")
    await _create(http, name, GREET, parameters=[{"key": "name", "value": "World"}])
    status, record = await _invoke(http, name)
    assert status == 200, record
    assert record["response"] == {"status": "success", "success": True,
                                  "result": {"greeting": "Hello World"}, "size": 26}
    assert _annotation(record, "path") == f"guest/{name}"
    assert _annotation(record, "kind") == "python:3.11"
    assert isinstance(_annotation(record, "initTime"), int)
    stored = await store.get_record(record["activationId"])
    assert stored is not None and stored.container_start == "prewarm"

    # The second call finds the container warm: no /init, so no initTime.
    status, again = await _invoke(http, name, {"name": "again"})
    assert status == 200 and again["response"]["result"] == {"greeting": "Hello again"}
    second = await store.get_record(again["activationId"])
    assert second is not None
    where = (f"first on {stored.invoker} ({stored.container_start}), "
             f"second on {second.invoker} ({second.container_start})")
    assert _annotation(again, "initTime") is None, where
    assert second.container_start == "warm" and second.invoker == stored.invoker, where


async def test_non_blocking_invoke_returns_id_and_record_appears(
    http: aiohttp.ClientSession,
) -> None:
    name = _name("async")
    await _create(http, name, GREET)
    async with http.post(f"{ACTIONS}/{name}", json={"name": "later"}) as resp:
        assert resp.status == 202
        body = await resp.json()
        assert resp.headers["x-openwhisk-activation-id"] == body["activationId"]
    record = await _record_when_ready(http, body["activationId"])
    assert record["response"]["result"] == {"greeting": "Hello later"}
    async with http.get(f"/api/v1/namespaces/_/activations/{body['activationId']}/result") as r:
        assert (await r.json())["result"] == {"greeting": "Hello later"}


async def test_application_error_is_502(http: aiohttp.ClientSession) -> None:
    name = _name("boom")
    await _create(http, name, "def main(args):\n    raise ValueError('no such thing')\n")
    status, record = await _invoke(http, name)
    assert status == 502
    assert record["response"]["status"] == "application error"
    assert record["response"]["result"] == {"error": "no such thing"}
    assert any("ValueError" in line and "stderr:" in line for line in record["logs"])
    status, result = await _invoke(http, name, result="true")
    assert (status, result) == (502, {"error": "no such thing"})


async def test_syntax_error_is_a_developer_error_at_init(http: aiohttp.ClientSession) -> None:
    name = _name("syntax")
    await _create(http, name, "def main(args)\n    return {}\n")
    status, record = await _invoke(http, name)
    assert status == 502
    assert record["response"]["status"] == "action developer error"
    assert "error" in record["response"]["result"]
    assert isinstance(_annotation(record, "initTime"), int)


async def test_timeout_is_a_developer_error_and_the_next_invoke_works(
    http: aiohttp.ClientSession, store: Store
) -> None:
    name = _name("sleepy")
    code = (
        "import time\n"
        "def main(args):\n"
        "    time.sleep(args.get('sleep', 0))\n"
        "    return {'slept': args.get('sleep', 0)}\n"
    )
    await _create(http, name, code, limits={"timeout": 1000})
    status, record = await _invoke(http, name, {"sleep": 3})
    assert status == 502, record
    assert record["response"]["result"] == {
        "error": "The action exceeded its time limits of 1000 milliseconds."}
    assert _annotation(record, "timeout") is True
    status, record2 = await _invoke(http, name, {"sleep": 0})
    assert status == 200 and record2["response"]["result"] == {"slept": 0}
    # The timed-out container was destroyed, never reused.
    stored = await store.get_record(record2["activationId"])
    assert stored is not None and stored.container_start != "warm"


async def test_stdout_stderr_and_subprocess_output_are_logged(
    http: aiohttp.ClientSession,
) -> None:
    name = _name("chatty")
    code = (
        "import subprocess, sys\n"
        "def main(args):\n"
        "    print('to stdout')\n"
        "    print('to stderr', file=sys.stderr)\n"
        "    subprocess.run(['echo', 'from a child'])\n"
        "    return {}\n"
    )
    await _create(http, name, code)
    status, record = await _invoke(http, name)
    assert status == 200
    async with http.get(f"/api/v1/namespaces/_/activations/{record['activationId']}/logs") as r:
        logs = (await r.json())["logs"]
    assert any(line.endswith(" stdout: to stdout") for line in logs), logs
    assert any(line.endswith(" stderr: to stderr") for line in logs), logs
    assert any(line.endswith(" stdout: from a child") for line in logs), logs
    # OpenWhisk's format: an ISO timestamp padded to 30 characters, then the stream.
    assert all(line[30:38] in (" stdout:", " stderr:") for line in logs), logs


async def test_work_spreads_over_both_invokers(
    http: aiohttp.ClientSession, store: Store, cluster: Cluster
) -> None:
    names = [_name("spread") for _ in range(12)]
    for name in names:
        await _create(http, name, GREET)
    results = await asyncio.gather(*(_invoke(http, n) for n in names))
    assert all(status == 200 for status, _ in results), results
    invokers = set()
    for _, record in results:
        stored = await store.get_record(record["activationId"])
        assert stored is not None
        invokers.add(stored.invoker)
    assert invokers == set(cluster.invoker_ids)


async def test_unauthenticated_is_401(cluster: Cluster) -> None:
    async with aiohttp.ClientSession(base_url=cluster.api_host) as anon:
        async with anon.get(ACTIONS) as resp:
            assert resp.status == 401
            assert "WWW-Authenticate" in resp.headers
        bad = aiohttp.encode_basic_auth(cluster.settings.guest_uuid, "x" * 64)
        async with anon.get(ACTIONS, headers={"Authorization": bad}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "The supplied authentication is invalid"


async def test_a_batch_from_a_gateway_gets_one_record_per_activation(
    cluster: Cluster, http: aiohttp.ClientSession, store: Store, broker: Broker
) -> None:
    name = _name("batch")
    await _create(http, name, GREET)
    doc = await store.get_action("guest", name)
    assert doc is not None
    requests = [build_request(doc, {"name": f"n{n}"}, namespace="guest",
                              activation_id=new_activation_id(), transaction_id="t",
                              asynchronous=True)
                for n in range(3)]
    await broker.publish(ActivationBatch(requests=requests), routing_key=ACTIVATIONS,
                         message_type=BATCH)
    for n, request in enumerate(requests):
        record = await _record_when_ready(http, request.activation_id)
        assert record["response"]["result"] == {"greeting": f"Hello n{n}"}
