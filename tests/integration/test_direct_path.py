"""The direct path on the real cluster: a blocking invoke of an action an invoker holds warm
goes from the gateway straight to that invoker, so it is served even while every initializer
is frozen; what the invoker declines (its warm container is busy) is published as usual and
completes once an initializer runs again."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

from tests.cluster_fixtures import Cluster

ACTIONS = "/api/v1/namespaces/_/actions"
SLOW_ECHO = (
    "import time\n\ndef main(args):\n    time.sleep(args.get('sleep', 0))\n    return args\n")


@contextmanager
def initializers_frozen(cluster: Cluster) -> Iterator[None]:
    frozen = [p for name, p in cluster.processes.procs.items()
              if name.startswith("initializer") and p.poll() is None]
    assert frozen, "no initializer to freeze"
    for proc in frozen:
        os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for proc in frozen:
            os.kill(proc.pid, signal.SIGCONT)


async def _invoke(http: aiohttp.ClientSession, name: str, args: dict,
                  timeout_ms: int) -> tuple[int, dict]:
    async with http.post(f"{ACTIONS}/{name}", json=args,
                         params={"blocking": "true", "timeout": str(timeout_ms)}) as resp:
        return resp.status, await resp.json()


async def _warm_action(http: aiohttp.ClientSession) -> str:
    name = f"direct-{uuid.uuid4().hex[:8]}"
    async with http.put(f"{ACTIONS}/{name}",
                        json={"exec": {"kind": "python:3.11", "code": SLOW_ECHO}}) as resp:
        assert resp.status == 200, await resp.text()
    status, record = await _invoke(http, name, {"n": 0}, 30_000)
    assert status == 200, record
    return name


async def test_warm_blocking_invokes_need_no_initializer(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    name = await _warm_action(http)
    with initializers_frozen(cluster):
        # Through the initializer these would wait out the 5 s and answer 202.
        answers = [await _invoke(http, name, {"n": n}, 5_000) for n in range(1, 6)]
    assert [status for status, _ in answers] == [200] * 5, answers
    assert [record["response"]["result"] for _, record in answers] == [
        {"n": n} for n in range(1, 6)]
    # Each has its stored record, like any activation.
    for _, record in answers:
        async with http.get(f"/api/v1/namespaces/_/activations/{record['activationId']}") as r:
            assert r.status == 200
            assert (await r.json())["response"]["result"] == record["response"]["result"]


async def test_declined_activation_is_published_and_completes_later(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    name = await _warm_action(http)
    with initializers_frozen(cluster):
        # The first takes the one warm container for 1.5 s; the second is declined meanwhile
        # and waits for an initializer that is frozen, so its caller gets the id.
        first = asyncio.create_task(_invoke(http, name, {"sleep": 1.5, "n": 1}, 10_000))
        await asyncio.sleep(0.3)
        second_status, second = await _invoke(http, name, {"n": 2}, 2_000)
        first_status, first_record = await first
    assert first_status == 200 and first_record["response"]["result"]["n"] == 1
    assert second_status == 202, second
    for _ in range(300):
        async with http.get(f"/api/v1/namespaces/_/activations/{second['activationId']}") as r:
            if r.status == 200:
                record = await r.json()
                break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the declined activation never completed")
    assert record["response"]["result"] == {"n": 2}
