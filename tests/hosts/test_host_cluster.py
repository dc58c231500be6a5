"""The platform on several hosts (network namespaces built by cli/hosts.py), as `ft hosts up`
runs it: three RabbitMQ nodes clustered with quorum queues, Redis with a replica, gateway and
initializer on h1, invokers on h2 and h3 reaching their own host's RabbitMQ node. Everything
crosses the test network: the machine is a client on 10.213.K.1."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path

import aiohttp
import redis

from bus.broker import ACTIVATIONS
from bus.codec import unpack
from bus.models import ActivationRecord
from bus.store import Store
from cli.host_cluster import HostCluster
from tests.faults.load import Load, put_action, run_load, sleeper, verdict, wait_for_done

ACTIONS = "/api/v1/namespaces/_/actions"
ECHO_N = "def main(args):\n    return {'n': args.get('n')}\n"


def test_every_durable_queue_is_a_quorum_queue_on_three_nodes(hosts: HostCluster) -> None:
    first = hosts.rabbit.hosts[0]
    assert sorted(hosts.rabbit.running_nodes(first)) == sorted(
        hosts.rabbit.node(h) for h in hosts.rabbit.hosts)
    listed = hosts.rabbit.ctl(first, "list_queues", "name", "type", "durable", "--formatter",
                              "json")
    assert listed.returncode == 0, listed.stderr
    queues = {q["name"]: q for q in json.loads(listed.stdout)}
    for name in ("ft.activations", "ft.destinations", "ft.fires", "ft.dead",
                 *(f"ft.invoker.{i}" for i in hosts.invoker_ids)):
        assert queues[name]["type"] == "quorum", queues[name]
    # Per-process reply queues stay classic (exclusive, gone with their process).
    assert any(q["type"] == "classic" for q in queues.values())


async def test_activations_cross_hosts_and_land_on_both_invokers(
    hosts: HostCluster, api: aiohttp.ClientSession
) -> None:
    names = [f"who{secrets.token_hex(2)}-{i}" for i in range(6)]
    for name in names:
        async with api.put(f"{ACTIONS}/{name}",
                           json={"exec": {"kind": "python:3.11", "code": ECHO_N},
                                 "limits": {"memory": 128}}) as resp:
            assert resp.status == 200, await resp.text()

    async def invoke(name: str, n: int) -> dict:
        async with api.post(f"{ACTIONS}/{name}?blocking=true", json={"n": n}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    records = await asyncio.gather(*(invoke(name, n) for n in range(3) for name in names))
    assert sorted(r["response"]["result"]["n"] for r in records) == sorted(
        n for n in range(3) for _ in names)
    # The replica on h2 has every record too; the records name invokers on both hosts.
    primary = hosts.redis.client()
    replica = redis.Redis(host=hosts.redis.replica.address, port=6379)
    try:
        keys = [f"ft:act:{r['activationId']}" for r in records]
        deadline = time.monotonic() + 10
        while not all(replica.exists(key) for key in keys):
            assert time.monotonic() < deadline, "the replica did not get every record"
            await asyncio.sleep(0.2)
        invokers = {unpack(primary.get(key), ActivationRecord).invoker for key in keys}
    finally:
        primary.close()
        replica.close()
    assert invokers == set(hosts.invoker_ids)


async def test_each_process_serves_its_metrics_on_its_host(hosts: HostCluster) -> None:
    async with aiohttp.ClientSession() as http:
        for host in hosts.network.hosts[1:3]:
            async with http.get(f"http://{host.address}:9100/metrics") as resp:
                assert resp.status == 200
                assert "ft_invoker_containers" in await resp.text()
        async with http.get(f"http://{hosts.network.hosts[0].address}:9100/metrics") as resp:
            assert "ft_initializer_invokers" in await resp.text()


def test_logs_name_no_error(hosts: HostCluster) -> None:
    logs = Path(hosts.processes.log_dir or ".")
    for log in logs.glob("*.log"):
        assert "Traceback" not in log.read_text(errors="replace"), log.name


# The faults come last: each mends what it broke, but leaves the cluster's history changed.
# Each runs 240 calls of a 0.3 s action on eight slots (about 9 s of work) and strikes once
# 20 of them are done.

async def test_killing_the_rabbitmq_leader_of_activations_loses_nothing(
    hosts: HostCluster, api: aiohttp.ClientSession
) -> None:
    """SIGKILL of the node leading ``ft.activations``: the processes that were connected to it
    move to the other nodes (while it is still down), the queue's new leader takes over, and
    every accepted activation ends with exactly one record."""
    name = f"nap{secrets.token_hex(2)}"
    await put_action(api, name, sleeper(0.3), timeout_ms=5000, memory=128)
    store = Store.from_url(hosts.redis.url)
    rabbit = hosts.rabbit
    try:
        leader = await asyncio.to_thread(rabbit.leader, ACTIVATIONS)
        clients = await asyncio.to_thread(rabbit.client_connections)
        load = Load()
        running = asyncio.ensure_future(run_load(api, name, 240, concurrency=16, load=load))
        await wait_for_done(store, load, 20)
        rabbit.kill_node(leader)
        fault_at, before = time.monotonic(), len(load.accepted)
        # Every process is connected again, to the two nodes left, before the third returns.
        while (now := await asyncio.to_thread(rabbit.client_connections)) != clients:
            assert time.monotonic() - fault_at < 30, f"{clients - now} did not move"
            await asyncio.sleep(0.5)
        moved_after = time.monotonic() - fault_at
        successor = await asyncio.to_thread(rabbit.leader, ACTIVATIONS)
        # The node stays down: two of three keep every quorum queue going (the benchmark's
        # fault, bench.scale_out, starts it again under load too).
        result = await verdict(store, "guest", name, await running, fault_at, timeout=120)
    finally:
        await store.close()
    print(f"\nRabbitMQ leader {rabbit.node(leader)} SIGKILL, {before} accepted before, "
          f"clients on other nodes after {moved_after:.1f} s, answers {load.statuses}: "
          f"{result.line()}")
    assert successor != leader
    assert 0 < before < result.accepted  # the load went on across the fault
    assert result.accepted == 240
    assert result.lost == 0 and result.duplicated == 0 and result.failed_explicit == 0


async def test_killing_the_redis_primary_loses_nothing(
    hosts: HostCluster, api: aiohttp.ClientSession
) -> None:
    """SIGKILL of the Redis primary: the Sentinels promote the replica, every process's next
    connection goes there, and records acknowledged before the kill were on the replica too
    (WAIT). The old primary comes back as a replica, as a restarted service would."""
    name = f"nap{secrets.token_hex(2)}"
    await put_action(api, name, sleeper(0.3), timeout_ms=5000, memory=128)
    group = hosts.redis
    store = Store.from_url(group.url)
    try:
        primary = await asyncio.to_thread(group.current_primary)
        assert primary is not None
        load = Load()
        running = asyncio.ensure_future(run_load(api, name, 240, concurrency=16, load=load))
        await wait_for_done(store, load, 20)
        group.kill_server(primary)
        fault_at, before = time.monotonic(), len(load.accepted)
        while (successor := await asyncio.to_thread(group.current_primary)) == primary:
            assert time.monotonic() - fault_at < 60, "the Sentinels did not fail over"
            await asyncio.sleep(0.5)
        group.start_server(primary)
        result = await verdict(store, "guest", name, await running, fault_at, timeout=120)
    finally:
        await store.close()
    print(f"\nRedis primary {primary.name} SIGKILL, {successor.name if successor else '?'} "
          f"promoted, {before} accepted before, answers {load.statuses}: {result.line()}")
    assert successor is not None and successor != primary
    assert 0 < before < result.accepted  # the load went on across the fault
    assert result.accepted == 240
    assert result.lost == 0 and result.duplicated == 0 and result.failed_explicit == 0
