"""Hybrid burst: a platform on this machine whose own pool is small (one invoker, two 128 MB
slots) with a remote pool (`ft burst`) that forwards to another platform, the cluster on the
test hosts, reached over the test network with a key of its own there. Work goes there only
when the local invoker is full; records stay here, naming the remote activation; an action
marked ``local-only`` never leaves; a remote that dies costs explicit errors, never a lost
activation."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from bus.config import GUEST_KEY, GUEST_UUID
from bus.models import NamespaceAuth
from bus.store import Store
from cli.cluster import ClusterError, LocalCluster, free_port, settings_env
from cli.host_cluster import HostCluster
from tests.conftest import claimed_redis_db, fresh_vhost
from tests.faults.load import Load, put_action, run_load, sleeper, verdict, wait_for_done

ACTIONS = "/api/v1/namespaces/_/actions"
ACTIVATIONS = "/api/v1/namespaces/_/activations"
REMOTE_FAILED = "The remote pool failed to run the action"


@dataclass
class Bursting:
    processes: LocalCluster
    pool_id: str
    store: Store
    http: aiohttp.ClientSession  # the local platform, as guest
    remote: aiohttp.ClientSession  # the remote platform, with the pool's own key
    remote_namespace: str


@pytest.fixture(scope="module")
async def bursting(
    hosts: HostCluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Bursting]:
    partner = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32),
                            namespace=f"partner-{secrets.token_hex(3)}")
    remote_store = Store.from_url(hosts.redis.url)
    try:
        await remote_store.put_auth(partner)
    finally:
        await remote_store.close()
    tag = secrets.token_hex(3)
    with fresh_vhost("ft-burst") as amqp_url, claimed_redis_db() as redis_url:
        port = free_port()
        processes = LocalCluster(
            env=settings_env(amqp_url=amqp_url, redis_url=redis_url, port=port,
                             work_dir=tmp_path_factory.mktemp("burst-work"),
                             user_memory_mb=256, stem_cells=[])
            # A failed asynchronous activation is retried after 0.2 s, not Lambda's minute.
            | {"FT_CONTAINER_BACKEND": "sandbox", "FT_ASYNC_RETRY_BASE_MS": "200"},
            invoker_ids=[f"b{tag}-0"], log_dir=tmp_path_factory.mktemp("burst-logs"))
        pool_id = f"b{tag}-remote"
        processes.start()
        processes.spawn(pool_id, "burst", {
            "FT_INVOKER_ID": pool_id, "FT_USER_MEMORY_MB": "1024",
            "FT_BURST_API_HOST": hosts.api_host,
            "FT_BURST_AUTH": f"{partner.uuid}:{partner.key}"})
        store = Store.from_url(redis_url)
        guest = {"Authorization": aiohttp.encode_basic_auth(GUEST_UUID, GUEST_KEY)}
        own = {"Authorization": aiohttp.encode_basic_auth(partner.uuid, partner.key)}
        async with aiohttp.ClientSession(base_url=processes.api_host, headers=guest) as http, \
                aiohttp.ClientSession(base_url=hosts.api_host, headers=own) as remote:
            try:
                await asyncio.to_thread(processes.wait_for_gateway)
                await _until_up(http, [*processes.invoker_ids, pool_id], processes)
                yield Bursting(processes, pool_id, store, http, remote, partner.namespace)
            finally:
                await store.close()
                await asyncio.to_thread(processes.stop)


async def _until_up(http: aiohttp.ClientSession, ids: list[str], processes: LocalCluster,
                    timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        async with http.get("/invokers") as resp:
            states = await resp.json()
        if all(states.get(i) == "up" for i in ids):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not up: {states}\n{processes.logs(3000)}")
        try:
            processes.check_alive()
        except ClusterError as exc:
            pytest.fail(f"{exc}\n{processes.logs(3000)}")
        await asyncio.sleep(0.3)


def _annotation(record: dict[str, Any], key: str) -> Any:
    return next((a["value"] for a in record["annotations"] if a["key"] == key), None)


async def _invoke(http: aiohttp.ClientSession, name: str, n: int) -> dict[str, Any]:
    async with http.post(f"{ACTIONS}/{name}?blocking=true&timeout=30000", json={"n": n}) as r:
        assert r.status == 200, await r.text()
        return dict(await r.json())


async def test_local_saturation_sends_work_to_the_remote_pool(bursting: Bursting) -> None:
    name = f"nap{secrets.token_hex(2)}"
    await put_action(bursting.http, name, sleeper(1.0), timeout_ms=10_000, memory=128)
    records = await asyncio.gather(*(_invoke(bursting.http, name, n) for n in range(10)))
    assert sorted(r["response"]["result"]["n"] for r in records) == list(range(10))
    remote_ids = [_annotation(r, "remoteActivationId") for r in records]
    burst = [(r, rid) for r, rid in zip(records, remote_ids, strict=True) if rid]
    # Two slots here for ten one-second calls: the pool took the overflow, not everything.
    assert 0 < len(burst) < len(records), remote_ids
    for record, remote_id in burst:
        assert record["namespace"] == "guest"  # the record is this platform's
        async with bursting.remote.get(f"{ACTIVATIONS}/{remote_id}") as resp:
            assert resp.status == 200, await resp.text()
            there = await resp.json()
        assert there["namespace"] == bursting.remote_namespace
        assert there["response"]["result"] == record["response"]["result"]
    # The local store holds every record, the burst ones included.
    for record in records:
        assert await bursting.store.get_record(record["activationId"]) is not None


async def test_local_only_actions_never_leave(bursting: Bursting) -> None:
    name = f"stay{secrets.token_hex(2)}"
    await put_action(bursting.http, name, sleeper(0.5), timeout_ms=10_000, memory=128,
                     annotations={"local-only": True})
    records = await asyncio.gather(*(_invoke(bursting.http, name, n) for n in range(8)))
    assert sorted(r["response"]["result"]["n"] for r in records) == list(range(8))
    assert [_annotation(r, "remoteActivationId") for r in records] == [None] * 8


async def test_a_remote_that_dies_costs_explicit_errors_and_loses_nothing(
    bursting: Bursting, hosts: HostCluster
) -> None:
    name = f"nap{secrets.token_hex(2)}"
    await put_action(bursting.http, name, sleeper(0.5), timeout_ms=10_000, memory=128)
    load = Load()
    running = asyncio.ensure_future(run_load(bursting.http, name, 32, concurrency=12,
                                             load=load))
    await wait_for_done(bursting.store, load, 4)
    gateway = hosts.processes.procs["gateway"]
    os.kill(gateway.pid, signal.SIGKILL)  # the remote platform's only API host
    fault_at = time.monotonic()
    try:
        result = await verdict(bursting.store, "guest", name, await running, fault_at,
                               timeout=120)
        records = [await bursting.store.get_record(a) for a in set(load.accepted)]
    finally:
        await asyncio.to_thread(gateway.wait)
        hosts.processes.restart("gateway")
        hosts.network.started(hosts.processes.procs["gateway"])
        await asyncio.to_thread(hosts.processes.wait_for_gateway)
    failed = [r for r in records if r is not None and not r.response.success]
    retried = [r for r in records if r is not None and r.attempts > 1]
    burst_ok = [r for r in records if r is not None and r.response.success
                and r.annotation("remoteActivationId")]
    print(f"\nremote API host SIGKILL under load: {result.line()}, "
          f"{len(burst_ok)} ran remotely before, {len(retried)} asynchronous ones ran again")
    assert result.lost == 0 and result.duplicated == 0
    assert burst_ok, "nothing ran remotely before the remote died"
    assert failed or retried, "the remote had nothing in hand when it died"
    # Whatever the dead remote had in hand was answered: a blocking call with an error saying
    # so, an asynchronous one (retried as Lambda retries) by a later attempt here.
    for record in failed:
        assert REMOTE_FAILED in str(record.response.result), record.response.result
