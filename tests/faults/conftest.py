"""A cluster of its own for fault injection: its own vhost, Redis database and processes, so
what these tests kill never touches the cluster other tests use. Dead invokers are noticed
in 3 s, forced completions come 5 s after an action's timeout and
outcomes age out of invoker health in 10 s, to keep scenarios short."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from bus.broker import Broker
from bus.config import Settings
from bus.store import Store
from cli.cluster import ClusterError, LocalCluster, free_port, settings_env
from tests.cluster_fixtures import FEED_ENV, Cluster, wait_for_stem_cells
from tests.conftest import claimed_redis_db, fresh_vhost

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
    with fresh_vhost("ft-faults") as amqp_url, claimed_redis_db() as redis_url:
        yield Settings(amqp_url=amqp_url, redis_url=redis_url,
                       work_dir=tmp_path_factory.mktemp("ft-faults-work"))


@pytest.fixture(scope="session")
async def docker_fault_cluster(
    fault_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    async with _fault_cluster(fault_settings, tmp_path_factory, "f") as found:
        yield found


@pytest.fixture(scope="session")
def cluster(docker_fault_cluster: Cluster) -> Cluster:
    """The fault suite's cluster (a module may run its tests on both backends' instead)."""
    return docker_fault_cluster


@pytest.fixture(scope="session")
async def sandbox_fault_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Cluster]:
    """The same on the sandbox backend, on a vhost, Redis database and sandbox directory of
    its own."""
    with fresh_vhost("ft-faults-sbx") as amqp_url, claimed_redis_db() as redis_url:
        settings = Settings(amqp_url=amqp_url, redis_url=redis_url,
                            work_dir=tmp_path_factory.mktemp("ft-faults-sbx-work"),
                            container_backend="sandbox",
                            sandbox_dir=Path(f"/tmp/ft-faults-sbx-{uuid.uuid4().hex[:8]}"))
        try:
            async with _fault_cluster(settings, tmp_path_factory, "g") as found:
                yield found
        finally:
            shutil.rmtree(settings.sandbox_dir, ignore_errors=True)


@asynccontextmanager
async def _fault_cluster(settings: Settings, tmp_path_factory: pytest.TempPathFactory,
                         letter: str) -> AsyncIterator[Cluster]:
    tag = uuid.uuid4().hex[:6]
    backend = {"FT_CONTAINER_BACKEND": settings.container_backend,
               "FT_SANDBOX_DIR": str(settings.sandbox_dir)}
    processes = LocalCluster(
        env=settings_env(amqp_url=settings.amqp_url, redis_url=settings.redis_url,
                         port=free_port(), work_dir=settings.work_dir, user_memory_mb=1024,
                         stem_cells=STEM_CELLS) | FEED_ENV | FAULT_ENV | backend,
        invoker_ids=[f"{letter}{tag}-0", f"{letter}{tag}-1"],
        log_dir=tmp_path_factory.mktemp(f"fault-cluster-{settings.container_backend}-logs"),
    )
    processes.start()
    try:
        await wait_ready(processes, settings)
    except (TimeoutError, ClusterError):
        processes.stop()
        pytest.fail("the fault cluster did not start\n" + processes.logs())
    try:
        yield Cluster(processes, f"{settings.guest_uuid}:{settings.guest_key}", settings)
    finally:
        await asyncio.to_thread(processes.stop)


async def wait_ready(processes: LocalCluster, settings: Settings,
                     ids: list[str] | None = None) -> None:
    broker = await Broker.connect(settings.amqp_url, name="fault-cluster-watch")
    try:
        await wait_for_stem_cells(broker, ids or processes.invoker_ids, timeout=90,
                                  wanted=sum(int(c["count"]) for c in STEM_CELLS))
        await asyncio.to_thread(processes.wait_for_gateway)
    finally:
        await broker.close()


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
