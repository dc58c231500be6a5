"""Sequences end to end: created over the REST API, run by the initializer component by
component on real invokers, observed through their records."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import Any

import aiohttp

from tests.cluster_fixtures import Cluster, ExtraInitializers
from tests.integration.test_cli import Ft, ft  # noqa: F401  (the fixture, shared)

ACTIONS = "/api/v1/namespaces/_/actions"
ACTIVATIONS = "/api/v1/namespaces/_/activations"

ADD_ONE = 'def main(args):\n    return {"n": args.get("n", 0) + 1, "seen": args.get("tag")}\n'
DOUBLE = 'def main(args):\n    return {"n": args["n"] * 2}\n'
FAIL = 'def main(args):\n    return {"error": "stop here", "n": args.get("n")}\n'


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _action(http: aiohttp.ClientSession, code: str, **extra: Any) -> str:
    name = _name("comp")
    body = {"exec": {"kind": "python:3.11", "code": code}, **extra}
    async with http.put(f"{ACTIONS}/{name}", json=body) as resp:
        assert resp.status == 200, await resp.text()
    return name


async def _sequence(http: aiohttp.ClientSession, components: list[str]) -> tuple[int, Any]:
    name = _name("seq")
    body = {"exec": {"kind": "sequence", "components": components},
            "parameters": [{"key": "ignored", "value": 1}]}
    async with http.put(f"{ACTIONS}/{name}", json=body) as resp:
        return resp.status, (await resp.json()) | {"_name": name}


async def _record(http: aiohttp.ClientSession, aid: str) -> dict:
    async with http.get(f"{ACTIVATIONS}/{aid}") as resp:
        assert resp.status == 200
        return await resp.json()


def _annotation(record: dict, key: str) -> Any:
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


async def test_two_step_sequence_result_records_and_causes(
    http: aiohttp.ClientSession,
) -> None:
    first = await _action(http, ADD_ONE, parameters=[{"key": "tag", "value": "p"}])
    second = await _action(http, DOUBLE)
    status, seq = await _sequence(http, [f"/_/{first}", f"/guest/{second}"])
    assert status == 200, seq
    assert seq["exec"] == {"kind": "sequence", "binary": False,
                           "components": [f"/guest/{first}", f"/guest/{second}"]}
    assert seq["parameters"] == [{"key": "_actions", "value": seq["exec"]["components"]}]

    async with http.post(f"{ACTIONS}/{seq['_name']}", params={"blocking": "true"},
                         json={"n": 4}) as resp:
        assert resp.status == 200, await resp.text()
        record = await resp.json()
    assert record["response"]["result"] == {"n": 10}
    assert _annotation(record, "kind") == "sequence" and _annotation(record, "topmost") is True
    assert _annotation(record, "limits")["memory"] == 256
    assert len(record["logs"]) == 2
    components = [await _record(http, aid) for aid in record["logs"]]
    assert [c["name"] for c in components] == [first, second]
    assert all(c["cause"] == record["activationId"] for c in components)
    assert all(_annotation(c, "causedBy") == "sequence" for c in components)
    assert components[0]["response"]["result"] == {"n": 5, "seen": "p"}
    assert record["duration"] == sum(c["duration"] for c in components)

    async with http.post(f"{ACTIONS}/{seq['_name']}",
                         params={"blocking": "true", "result": "true"}, json={"n": 0}) as resp:
        assert (resp.status, await resp.json()) == (200, {"n": 2})


async def test_error_short_circuits(http: aiohttp.ClientSession) -> None:
    ok, fail, never = (await _action(http, ADD_ONE), await _action(http, FAIL),
                       await _action(http, DOUBLE))
    status, seq = await _sequence(http, [ok, fail, never])
    assert status == 200, seq
    async with http.post(f"{ACTIONS}/{seq['_name']}", params={"blocking": "true"},
                         json={"n": 1}) as resp:
        assert resp.status == 502
        record = await resp.json()
    assert record["response"]["status"] == "application error"
    assert record["response"]["result"] == {"error": "stop here"}
    assert len(record["logs"]) == 2  # the third component never ran


async def test_non_blocking_sequence_and_nested_sequence(http: aiohttp.ClientSession) -> None:
    inner_status, inner = await _sequence(http, [await _action(http, ADD_ONE)])
    assert inner_status == 200
    status, outer = await _sequence(http, [inner["_name"], await _action(http, DOUBLE)])
    assert status == 200
    async with http.post(f"{ACTIONS}/{outer['_name']}",
                         params={"blocking": "true", "result": "true"}, json={"n": 1}) as resp:
        assert (resp.status, await resp.json()) == (200, {"n": 4})


async def test_validation(http: aiohttp.ClientSession) -> None:
    async def error_of(components: list[str]) -> tuple[int, str]:
        status, body = await _sequence(http, components)
        return status, body.get("error", "")

    assert await error_of([]) == (400, "No component specified for the sequence.")
    assert await error_of(["no-such-action"]) == (400, "Sequence component does not exist.")
    leaf = await _action(http, DOUBLE)
    assert await error_of([leaf] * 51) == (400, "Too many actions in the sequence.")
    status, seq = await _sequence(http, [leaf])
    assert status == 200
    async with http.put(f"{ACTIONS}/{seq['_name']}", params={"overwrite": "true"},
                        json={"exec": {"kind": "sequence",
                                       "components": [leaf, seq["_name"]]}}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "Sequence may not refer to itself."


async def test_cli_sequence_web_and_url(
    ft: Ft, http: aiohttp.ClientSession  # noqa: F811  (the imported fixture)
) -> None:
    first, second = await _action(http, ADD_ONE), await _action(http, DOUBLE)
    name = _name("cliseq")
    done = await ft("action", "create", name, "--sequence", f"{first},/_/{second}",
                    "--web", "true")
    assert done.returncode == 0, done.stderr
    async with http.get(f"{ACTIONS}/{name}") as resp:
        action = await resp.json()
    assert action["exec"]["components"] == [f"/guest/{first}", f"/guest/{second}"]
    marks = {a["key"]: a["value"] for a in action["annotations"]}
    assert (marks["web-export"], marks["raw-http"], marks["final"]) == (True, False, True)
    done = await ft("action", "get", name, "--url")
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip().splitlines()[-1]
    assert url.endswith(f"/api/v1/web/guest/default/{name}")
    async with aiohttp.ClientSession() as anonymous:  # a sequence is a web action too
        async with anonymous.post(url + ".json", json={"n": 3}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["n"] == 8
    done = await ft("action", "create", _name("bad"), "--sequence", "no-such-action")
    assert done.returncode != 0 and "Sequence component does not exist." in done.stderr


async def test_sequence_survives_its_initializer_being_killed(
    http: aiohttp.ClientSession, cluster: Cluster, initializers: ExtraInitializers,
) -> None:
    """The request is acked only after the record is written: killed mid-run, the sequence
    is redelivered, resumed by another initializer, and recorded exactly once."""
    slow = await _action(http, 'import time\ndef main(args):\n    time.sleep(3)\n'
                               '    return {"n": args["n"] + 1}\n')
    status, seq = await _sequence(http, [slow, await _action(http, DOUBLE)])
    assert status == 200
    async with http.post(f"{ACTIONS}/{seq['_name']}", json={"n": 1}) as resp:
        assert resp.status == 202
        aid = (await resp.json())["activationId"]
    await asyncio.sleep(1.0)  # the first component is running now
    running = [(name, proc) for name, proc in cluster.processes.procs.items()
               if name.startswith("initializer") and proc.poll() is None]
    assert running
    for _, proc in running:
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.wait)
    await initializers.start(keep=True)  # the cluster keeps this one for later tests

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline:
        async with http.get(f"{ACTIVATIONS}/{aid}") as resp:
            if resp.status == 200:
                record = await resp.json()
                break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the sequence was not resumed")
    assert record["response"]["result"] == {"n": 4}
    assert len(record["logs"]) == 2
    async with http.get(ACTIVATIONS, params={"name": seq["_name"]}) as resp:
        assert [r["activationId"] for r in await resp.json()] == [aid]
