"""The cluster on test hosts (cli/host_cluster.py) that every test here shares, started once:
three RabbitMQ nodes with quorum queues, Redis with a replica and Sentinels, gateway and
initializer on h1, invokers on h2 and h3. The machine reaches it as a client on 10.213.211.1."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from bus.config import GUEST_KEY, GUEST_UUID
from cli.host_cluster import HostCluster
from cli.hosts import HostNetwork


@pytest.fixture(scope="package")
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
