"""A whole cluster for end-to-end tests: gateway, initializer and two invokers as real
processes on the session's own RabbitMQ vhost and Redis database, with real containers."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aio_pika.abc import AbstractIncomingMessage

from bus.broker import HEALTH, Broker, settle
from bus.codec import unpack
from bus.config import Settings
from bus.models import Heartbeat
from cli.cluster import ClusterError, LocalCluster, settings_env

STEM_CELLS = [{"kind": "python:3.11", "memory": 256, "count": 2}]


@dataclass
class Cluster:
    """What tests need of the running cluster."""

    processes: LocalCluster
    auth: str
    settings: Settings

    @property
    def api_host(self) -> str:
        return self.processes.api_host

    @property
    def invoker_ids(self) -> list[str]:
        return self.processes.invoker_ids

    @property
    def auth_header(self) -> dict[str, str]:
        user, key = self.auth.split(":", 1)
        return {"Authorization": aiohttp.encode_basic_auth(user, key)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_for_invokers(broker: Broker, ids: list[str], timeout: float) -> None:
    """Until every invoker has sent a heartbeat showing all its stem cells prewarmed."""
    ready: set[str] = set()
    done = asyncio.Event()
    wanted = sum(c["count"] for c in STEM_CELLS)

    async def on_beat(message: AbstractIncomingMessage) -> None:
        beat = unpack(message.body, Heartbeat)
        await settle(message)
        if beat.invoker_id in ids and sum(beat.prewarmed.values()) >= wanted:
            ready.add(beat.invoker_id)
            if ready == set(ids):
                done.set()

    queue = await broker.consume(None, on_beat, prefetch=50, bind_to=HEALTH)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await broker.stop_consuming(queue)


@pytest.fixture(scope="session")
async def cluster(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    tag = uuid.uuid4().hex[:6]
    processes = LocalCluster(
        env=settings_env(amqp_url=settings.amqp_url, redis_url=settings.redis_url,
                         port=_free_port(), work_dir=settings.work_dir, user_memory_mb=1024,
                         stem_cells=STEM_CELLS),
        invoker_ids=[f"t{tag}-0", f"t{tag}-1"],
        log_dir=tmp_path_factory.mktemp("cluster-logs"),
    )
    processes.start()
    broker = await Broker.connect(settings.amqp_url, name="test-cluster-watch")
    try:
        await _wait_for_invokers(broker, processes.invoker_ids, timeout=90)
        await asyncio.to_thread(processes.wait_for_gateway)
    except (TimeoutError, ClusterError):
        processes.stop()
        pytest.fail("the cluster did not start\n" + processes.logs())
    finally:
        await broker.close()
    yield Cluster(processes, f"{settings.guest_uuid}:{settings.guest_key}", settings)
    await asyncio.to_thread(processes.stop)


@pytest.fixture
async def http(cluster: Cluster) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=cluster.api_host,
                                     headers=cluster.auth_header) as s:
        yield s
