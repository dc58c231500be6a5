"""Throttles on the real cluster: records written by real invokers and by the initializer's
sequence runner free the concurrency slot; a sequence counts once, its components not at all."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bus.models import NamespaceAuth, NamespaceLimits
from bus.store import Store
from tests.cluster_fixtures import Cluster
from tests.integration.conftest import BACKEND_NEUTRAL

ACTIONS = "/api/v1/namespaces/_/actions"
SLEEPY = "import time\ndef main(args):\n    time.sleep(args.get('s', 0))\n    return {'ok': 1}\n"


@pytest.fixture
async def own(cluster: Cluster, store: Store) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """A namespace of its own on the cluster (its limits are set per test)."""
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32),
                         namespace=f"thr-{uuid.uuid4().hex[:8]}")
    await store.put_auth(auth)
    headers = {"Authorization": aiohttp.encode_basic_auth(auth.uuid, auth.key)}
    async with aiohttp.ClientSession(base_url=cluster.api_host, headers=headers) as http:
        yield http, auth.namespace


async def _put(http: aiohttp.ClientSession, name: str, exec_: dict[str, object]) -> None:
    async with http.put(f"{ACTIONS}/{name}", json={"exec": exec_}) as resp:
        assert resp.status == 200, await resp.text()


async def _invoke(http: aiohttp.ClientSession, name: str, query: str = "",
                  body: dict[str, object] | None = None) -> tuple[int, dict]:
    async with http.post(f"{ACTIONS}/{name}{query}", json=body or {}) as resp:
        return resp.status, await resp.json()


async def test_invoker_record_frees_the_slot(
    own: tuple[aiohttp.ClientSession, str], store: Store
) -> None:
    http, ns = own
    await _put(http, "sleepy", {"kind": "python:3.11", "code": SLEEPY})
    await store.set_limits(ns, NamespaceLimits(concurrentInvocations=1))
    running = asyncio.create_task(
        _invoke(http, "sleepy", "?blocking=true&result=true", {"s": 2})
    )
    deadline = time.monotonic() + 10
    while await store.in_flight(ns) == 0:  # accepted, running
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    status, body = await _invoke(http, "sleepy")
    assert status == 429
    assert body["error"] == "Too many concurrent requests in flight (count: 1, allowed: 1)."
    status, body = await running
    assert (status, body) == (200, {"ok": 1})
    assert await store.in_flight(ns) == 0
    assert (await _invoke(http, "sleepy", "?blocking=true&result=true"))[0] == 200


@BACKEND_NEUTRAL
async def test_sequence_counts_once(own: tuple[aiohttp.ClientSession, str], store: Store) -> None:
    http, ns = own
    await _put(http, "step", {"kind": "python:3.11", "code": SLEEPY})
    await _put(http, "seq", {"kind": "sequence", "components": ["/_/step", "/_/step"]})
    # One slot and a rate of one: the sequence's two components must not be throttled, and
    # its own record (written by the initializer) frees the slot.
    await store.set_limits(ns, NamespaceLimits(concurrentInvocations=1, invocationsPerMinute=1))
    if time.time() % 60 > 45:  # keep both requests in one calendar minute
        await asyncio.sleep(60.5 - time.time() % 60)
    assert await _invoke(http, "seq", "?blocking=true&result=true") == (200, {"ok": 1})
    assert await store.in_flight(ns) == 0
    status, body = await _invoke(http, "seq", "?blocking=true")
    assert status == 429
    assert body["error"] == "Too many requests in the last minute (count: 2, allowed: 1)."
