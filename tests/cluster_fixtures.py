"""A whole cluster for end-to-end tests: gateway, initializer and two invokers as real processes
on the session's own RabbitMQ vhost and Redis database, with real containers. A pytest plugin
(registered in tests/conftest.py), so every directory shares the one cluster."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aio_pika.abc import AbstractIncomingMessage

from bus.broker import HEALTH, Broker, settle
from bus.codec import unpack
from bus.config import Settings
from bus.models import Heartbeat
from cli.cluster import COMPONENTS, ClusterError, LocalCluster, free_port, settings_env

STEM_CELLS = [{"kind": "python:3.11", "memory": 256, "count": 2}]
# Feed retries after 100, 200, 400 ms..., and feed leases that expire in 3 s, keep tests short.
FEED_ENV = {"FT_FEED_RETRY_BASE_MS": "100", "FT_FEED_LEASE_TTL_MS": "3000"}
# Short waits so retries and stem-cell reclaiming happen within a test's time.
FAST_ENV = {"FT_ASYNC_RETRY_BASE_MS": "200", "FT_STEM_CELL_RECLAIM_S": "2"}


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




async def wait_for_stem_cells(
    broker: Broker, ids: list[str], timeout: float, wanted: int | None = None
) -> None:
    """Until every invoker has sent a heartbeat showing ``wanted`` stem cells prewarmed
    (default: all it is configured with)."""
    ready: set[str] = set()
    done = asyncio.Event()
    if wanted is None:
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


@pytest.fixture(scope="session")
def cluster(docker_cluster: Cluster) -> Cluster:
    """The end-to-end cluster most tests use (a directory may run its tests on another, as
    tests/hostile does on both backends)."""
    return docker_cluster


@pytest.fixture(scope="session")
async def docker_cluster(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    tag = uuid.uuid4().hex[:6]
    processes = LocalCluster(
        env=settings_env(amqp_url=settings.amqp_url, redis_url=settings.redis_url,
                         port=free_port(), work_dir=settings.work_dir, user_memory_mb=4096,
                         stem_cells=STEM_CELLS) | FAST_ENV | FEED_ENV,
        invoker_ids=[f"t{tag}-0", f"t{tag}-1"],
        log_dir=tmp_path_factory.mktemp("cluster-logs"), metrics_base_port=0,
    )
    await _start(processes, settings.amqp_url, "cluster", timeout=90)
    yield Cluster(processes, f"{settings.guest_uuid}:{settings.guest_key}", settings)
    await asyncio.to_thread(processes.stop)


async def _start(processes: LocalCluster, amqp_url: str, what: str, timeout: float) -> None:
    """Start the cluster's processes and wait until every invoker has its stem cells and the
    gateway answers; fail the test session with the logs if it does not come up."""
    processes.start()
    broker = await Broker.connect(amqp_url, name=f"{what.replace(' ', '-')}-watch")
    try:
        await wait_for_stem_cells(broker, processes.invoker_ids, timeout=timeout)
        await asyncio.to_thread(processes.wait_for_gateway)
    except (TimeoutError, ClusterError):
        processes.stop()
        pytest.fail(f"the {what} did not start\n" + processes.logs())
    finally:
        await broker.close()


@pytest.fixture(scope="session")
async def sandbox_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    """The same cluster on the sandbox backend (FT_CONTAINER_BACKEND=sandbox), on a vhost,
    Redis database and sandbox directory of its own."""
    from tests.conftest import claimed_redis_db, fresh_vhost

    with fresh_vhost("ft-sandbox") as amqp_url, claimed_redis_db() as redis_url:
        settings = Settings(amqp_url=amqp_url, redis_url=redis_url,
                            work_dir=tmp_path_factory.mktemp("ft-sandbox-work"),
                            container_backend="sandbox",
                            sandbox_dir=Path(f"/tmp/ft-sandbox-{uuid.uuid4().hex[:8]}"))
        tag = uuid.uuid4().hex[:6]
        processes = LocalCluster(
            env=settings_env(amqp_url=amqp_url, redis_url=redis_url, port=free_port(),
                             work_dir=settings.work_dir, user_memory_mb=4096,
                             stem_cells=STEM_CELLS) | FAST_ENV | FEED_ENV
            | {"FT_CONTAINER_BACKEND": "sandbox", "FT_SANDBOX_DIR": str(settings.sandbox_dir)},
            invoker_ids=[f"s{tag}-0", f"s{tag}-1"],
            log_dir=tmp_path_factory.mktemp("sandbox-cluster-logs"), metrics_base_port=0,
        )
        await _start(processes, amqp_url, "sandbox cluster", timeout=120)
        yield Cluster(processes, f"{settings.guest_uuid}:{settings.guest_key}", settings)
        await asyncio.to_thread(processes.stop)
        shutil.rmtree(settings.sandbox_dir, ignore_errors=True)


@pytest.fixture
async def http(cluster: Cluster) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=cluster.api_host,
                                     headers=cluster.auth_header) as s:
        yield s


def _spawn_initializer(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-c", COMPONENTS["initializer"]],
                                env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)


@dataclass
class ExtraInitializers:
    """More initializer processes beside the cluster's (feeds, leases, alarm claims).

    ``start(keep=True)`` hands the process to the cluster, which stops it at the end of the
    session (a replacement for one a test killed); the others stop when the test ends."""

    cluster: Cluster
    started: list[subprocess.Popen[bytes]]

    async def start(self, *, keep: bool = False, timeout: float = 30) -> subprocess.Popen[bytes]:
        processes = self.cluster.processes
        name = f"initializer-extra-{uuid.uuid4().hex[:6]}"
        log_path = (processes.log_dir or Path(tempfile.gettempdir())) / f"{name}.log"
        env = dict(processes.env)
        if keep and processes.metrics_base_port is not None:
            # The cluster's initializer from now on: its metrics are scraped like the first's.
            processes.metrics_ports[name] = free_port()
            env["FT_METRICS_PORT"] = str(processes.metrics_ports[name])
        proc = await asyncio.to_thread(_spawn_initializer, env, log_path)
        if keep:
            processes.procs[name] = proc
        else:
            self.started.append(proc)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while b" ready" not in log_path.read_bytes():
            if proc.poll() is not None or loop.time() > deadline:
                raise AssertionError(f"{name} did not start:\n{log_path.read_text()[-3000:]}")
            await asyncio.sleep(0.1)
        return proc


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
