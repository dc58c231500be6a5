"""Gateways under fault: one SIGKILLed while callers wait on it (they retry on the other
gateway with their idempotency key and get the same activation), one SIGTERMed (it answers
its waiting callers before it exits), and the initializer SIGTERMed (it hands its work on)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bus.store import Store
from cli.cluster import free_port
from tests.cluster_fixtures import Cluster, ExtraInitializers
from tests.faults.load import ACTIONS, put_action, sleeper, wait_for_done
from tests.faults.mixed import start_mixed

NS = "guest"


def _wait_answering(api_host: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{api_host}/api/v1", timeout=1):
                return
        except OSError:
            assert time.monotonic() < deadline, f"no gateway answers on {api_host}"
            time.sleep(0.1)


async def _spawn_gateway(cluster: Cluster, name: str, port: int) -> str:
    api_host = f"http://127.0.0.1:{port}"
    cluster.processes.spawn(name, "gateway",
                             {"FT_GATEWAY_PORT": str(port), "FT_API_HOST": api_host})
    await asyncio.to_thread(_wait_answering, api_host)
    return api_host


@pytest.fixture
async def second_gateway(cluster: Cluster) -> AsyncIterator[aiohttp.ClientSession]:
    """Another gateway on its own port (the cluster stops it at the end of the session)."""
    api_host = await _spawn_gateway(cluster, f"gateway-second-{uuid.uuid4().hex[:4]}",
                                    free_port())
    async with aiohttp.ClientSession(base_url=api_host, headers=cluster.auth_header,
                                     timeout=aiohttp.ClientTimeout(total=90)) as session:
        yield session


def _main_gateway(cluster: Cluster) -> str:
    """The running gateway on the cluster's own port: the first one, or its replacement."""
    return next(n for n, p in cluster.processes.procs.items()
                if (n == "gateway" or n.startswith("gateway-main")) and p.poll() is None)


async def test_sigkill_of_a_gateway_with_waiting_callers_loses_nothing(
    cluster: Cluster, http: aiohttp.ClientSession, second_gateway: aiohttp.ClientSession,
    store: Store,
) -> None:
    name = f"gw-{uuid.uuid4().hex[:6]}"
    # Long enough that many blocking callers are waiting on the gateway when it dies.
    await put_action(http, name, sleeper(1.0), timeout_ms=10_000)
    # 64 calls of 1 s on 8 slots: ~8 s of work, 16 callers at a time, half on each gateway.
    mixed = await start_mixed(http, cluster.auth, cluster.settings.amqp_url, name, 64,
                              gateways=[http, second_gateway])
    await wait_for_done(store, mixed.load, 4)  # blocking callers are waiting on both
    port = int(cluster.processes.env["FT_GATEWAY_PORT"])
    victim = _main_gateway(cluster)
    proc = cluster.processes.procs[victim]
    os.kill(proc.pid, signal.SIGKILL)
    fault_at = time.monotonic()
    await mixed.at_fault(store, "gateway SIGKILL")
    await asyncio.to_thread(proc.wait)
    del cluster.processes.procs[victim]
    # Restarted on its port: the first gateway's callers may come back to it.
    await _spawn_gateway(cluster, f"gateway-main-{uuid.uuid4().hex[:4]}", port)
    restarted_s = time.monotonic() - fault_at
    load, result, fed = await mixed.verdicts(store, fault_at, "gateway SIGKILL")
    print(f"[gateway SIGKILL] restarted_after_s={restarted_s:.1f} statuses={load.statuses}")
    assert result.lost == 0 and result.duplicated == 0 and fed.lost == 0
    assert result.accepted == 64
    assert load.refused > 0, "no caller lost its gateway: the kill came too late to matter"
    # Whoever got only an id fetches the result by it, from either gateway.
    for aid in load.accepted[::10]:
        async with second_gateway.get(f"/api/v1/namespaces/_/activations/{aid}") as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["activationId"] == aid


async def test_sigterm_of_a_gateway_answers_its_waiting_callers(
    cluster: Cluster, http: aiohttp.ClientSession, store: Store,
) -> None:
    """A stopping gateway answers each waiting caller (202 with the id) before it exits."""
    name = f"gwterm-{uuid.uuid4().hex[:6]}"
    await put_action(http, name, sleeper(3.0), timeout_ms=10_000)
    port = int(cluster.processes.env["FT_GATEWAY_PORT"])
    victim = _main_gateway(cluster)
    proc = cluster.processes.procs[victim]
    calls = [asyncio.create_task(http.post(f"{ACTIONS}/{name}?blocking=true", json={"n": n}))
             for n in range(6)]
    await asyncio.sleep(1.5)  # all six are waiting for their records
    proc.send_signal(signal.SIGTERM)
    fault_at = time.monotonic()
    ids = []
    for call in calls:
        resp = await call
        assert resp.status == 202, await resp.text()
        ids.append((await resp.json())["activationId"])
        resp.release()
    await asyncio.to_thread(proc.wait, 30)
    del cluster.processes.procs[victim]
    await _spawn_gateway(cluster, f"gateway-main-{uuid.uuid4().hex[:4]}", port)
    records = {}
    while len(records) < len(ids) and time.monotonic() - fault_at < 30:
        for aid in ids:
            record = await store.get_record(aid)
            if record is not None:
                records[aid] = record
        await asyncio.sleep(0.2)
    succeeded = sum(1 for r in records.values() if r.response.success)
    print(f"\n[gateway SIGTERM] accepted={len(ids)} succeeded={succeeded} "
          f"failed_explicit={len(records) - succeeded} lost={len(ids) - len(records)} "
          f"duplicated=0 recovery_s={time.monotonic() - fault_at:.1f}")
    assert len(records) == len(ids) == len(set(ids))
    assert succeeded == len(ids)


async def test_sigterm_of_the_initializer_hands_its_work_on(
    cluster: Cluster, http: aiohttp.ClientSession, store: Store,
    initializers: ExtraInitializers,
) -> None:
    name = f"initterm-{uuid.uuid4().hex[:6]}"
    await put_action(http, name, sleeper(0.2), timeout_ms=5000)
    await initializers.start(keep=True)  # the one that stays
    mixed = await start_mixed(http, cluster.auth, cluster.settings.amqp_url, name, 100)
    await wait_for_done(store, mixed.load, 8)
    victim = next(n for n, p in cluster.processes.procs.items()
                  if n.startswith("initializer") and p.poll() is None)
    proc = cluster.processes.procs[victim]
    proc.send_signal(signal.SIGTERM)
    fault_at = time.monotonic()
    await mixed.at_fault(store, "initializer SIGTERM")
    await asyncio.to_thread(proc.wait, 40)
    del cluster.processes.procs[victim]
    _, result, fed = await mixed.verdicts(store, fault_at, "initializer SIGTERM")
    assert proc.returncode == 0
    assert result.lost == 0 and result.duplicated == 0 and fed.lost == 0
    assert result.failed_explicit == 0
