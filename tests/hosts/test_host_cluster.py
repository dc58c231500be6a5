"""The platform on several hosts (network namespaces built by cli/hosts.py), as `ft hosts up`
runs it: three RabbitMQ nodes clustered with quorum queues, Redis with a replica, gateway and
initializer on h1, invokers on h2 and h3 reaching their own host's RabbitMQ node. Everything
crosses the test network: the machine is a client on 10.213.K.1."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from bus.codec import unpack
from bus.config import GUEST_KEY, GUEST_UUID
from bus.models import ActivationRecord
from cli.host_cluster import HostCluster
from cli.hosts import HostNetwork

ACTIONS = "/api/v1/namespaces/_/actions"
ECHO_N = "def main(args):\n    return {'n': args.get('n')}\n"


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostCluster]:
    cluster = HostCluster.for_invokers(f"t{secrets.token_hex(2)}", 2,
                                       tmp_path_factory.mktemp("hosts"), subnet=211,
                                       user_memory_mb=512)
    try:
        cluster.start(invokers=2)
    except Exception:
        pytest.fail("the host cluster did not start\n" + cluster.processes.logs(3000))
    yield cluster
    cluster.stop()
    assert not [n for n in HostNetwork.leftovers() if n.tag == cluster.network.tag]


@pytest.fixture
async def api(hosts: HostCluster) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": aiohttp.encode_basic_auth(GUEST_UUID, GUEST_KEY)}
    async with aiohttp.ClientSession(base_url=hosts.api_host, headers=headers) as http:
        yield http


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
    primary = redis.Redis.from_url(hosts.redis.url)
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
