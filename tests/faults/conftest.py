"""A cluster of its own for fault injection: its own vhost, Redis database and processes, so
what these tests kill never touches the cluster other tests use. Dead invokers are noticed
in 3 s, forced completions come 5 s after an action's timeout and
outcomes age out of invoker health in 10 s, to keep scenarios short."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import redis
from aio_pika.abc import AbstractIncomingMessage

from bus.broker import HEALTH, Broker, settle
from bus.codec import unpack
from bus.config import Settings
from bus.models import Heartbeat
from bus.store import Store
from cli.cluster import ClusterError, LocalCluster, settings_env
from tests.cluster_fixtures import FEED_ENV, Cluster, ExtraInitializers
from tests.conftest import RABBIT, REDIS, _rabbitmqctl

STEM_CELLS: list[dict[str, str | int]] = [{"kind": "python:3.11", "memory": 256, "count": 2}]

FAULT_ENV = {
    "FT_INVOKER_DEAD_AFTER_S": "3",
    "FT_ACTIVATION_DEADLINE_MARGIN_S": "5",
    "FT_DRAIN_LEASE_TTL_MS": "3000",
    "FT_INVOKER_HEALTH_WINDOW_S": "10",
    # The throttles are not under test here.
    "FT_INVOCATIONS_PER_MINUTE": "1000000",
    "FT_CONCURRENT_INVOCATIONS": "1000000",
    "FT_ASYNC_RETRY_BASE_MS": "200",
}


@pytest.fixture(scope="session")
def fault_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    vhost = f"ft-faults-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    lock = f"ft-faults-{uuid.uuid4().hex}"
    claimed: redis.Redis | None = None
    db = 0
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        if client.set("ft:test-lock", lock, nx=True, ex=3600):
            client.flushdb()
            client.set("ft:test-lock", lock, ex=3600)
            claimed = client
            break
        client.close()
    if claimed is None:
        _rabbitmqctl("delete_vhost", vhost)
        pytest.fail("no free Redis database for the fault tests")
    try:
        yield Settings(amqp_url=f"{RABBIT}/{vhost}", redis_url=f"{REDIS}/{db}",
                       work_dir=tmp_path_factory.mktemp("ft-faults-work"))
    finally:
        claimed.flushdb()
        claimed.close()
        _rabbitmqctl("delete_vhost", vhost)


@pytest.fixture(scope="session")
async def cluster(
    fault_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    settings = fault_settings
    tag = uuid.uuid4().hex[:6]
    processes = LocalCluster(
        env=settings_env(amqp_url=settings.amqp_url, redis_url=settings.redis_url,
                         port=_free_port(), work_dir=settings.work_dir, user_memory_mb=1024,
                         stem_cells=STEM_CELLS) | FEED_ENV | FAULT_ENV,
        invoker_ids=[f"f{tag}-0", f"f{tag}-1"],
        log_dir=tmp_path_factory.mktemp("fault-cluster-logs"),
    )
    processes.start()
    try:
        await wait_ready(processes, settings)
    except (TimeoutError, ClusterError):
        processes.stop()
        pytest.fail("the fault cluster did not start\n" + processes.logs())
    yield Cluster(processes, f"{settings.guest_uuid}:{settings.guest_key}", settings)
    await asyncio.to_thread(processes.stop)


async def wait_ready(processes: LocalCluster, settings: Settings,
                     ids: list[str] | None = None) -> None:
    broker = await Broker.connect(settings.amqp_url, name="fault-cluster-watch")
    try:
        await _beating(broker, ids or processes.invoker_ids, timeout=90)
        await asyncio.to_thread(processes.wait_for_gateway)
    finally:
        await broker.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _beating(broker: Broker, ids: list[str], timeout: float) -> None:
    """Until every invoker in ``ids`` sent a heartbeat with its stem cells prewarmed."""
    ready: set[str] = set()
    done = asyncio.Event()
    wanted = sum(int(c["count"]) for c in STEM_CELLS)

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


@pytest.fixture
async def store(fault_settings: Settings) -> AsyncIterator[Store]:
    s = Store.from_url(fault_settings.redis_url)
    yield s
    await s.close()


@pytest.fixture
async def http(cluster: Cluster) -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=90)
    async with aiohttp.ClientSession(base_url=cluster.api_host, headers=cluster.auth_header,
                                     timeout=timeout) as s:
        yield s


@pytest.fixture
async def initializers(cluster: Cluster) -> AsyncIterator[ExtraInitializers]:
    extra = ExtraInitializers(cluster, [])
    yield extra
    for proc in extra.started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in extra.started:
        try:
            await asyncio.to_thread(proc.wait, 30)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
