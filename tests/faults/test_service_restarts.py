"""Restarts of the services under a loaded cluster: RabbitMQ, Redis (killed: AOF with
``appendfsync always``) and the Docker engine. The shared instances serve other sessions, so
this module runs a cluster of its own on private instances (``private_services.py``) and
restarts those. Last, RabbitMQ comes back with a 3 s ``consumer_timeout`` to show it cannot
kill activations that run longer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aiohttp
import pytest

from bus.config import Settings
from bus.store import Store
from cli.cluster import ClusterError, LocalCluster, free_port, settings_env
from invoker.backends.docker import LABEL
from tests.cluster_fixtures import FEED_ENV, Cluster
from tests.faults.conftest import FAULT_ENV, STEM_CELLS, wait_ready
from tests.faults.load import ACTIONS, put_action, sleeper, wait_for_done
from tests.faults.mixed import Mixed, start_mixed
from tests.faults.private_services import PrivateDockerd, PrivateRabbit, PrivateRedis

NS = "guest"


@dataclass
class Private:
    rabbit: PrivateRabbit
    redis: PrivateRedis
    dockerd: PrivateDockerd
    cluster: Cluster


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[PrivateRabbit, PrivateRedis, PrivateDockerd]]:
    base = tmp_path_factory.mktemp("ft-private")
    rabbit, redis, dockerd = (PrivateRabbit(base / "rabbit"), PrivateRedis(base / "redis"),
                              PrivateDockerd(base / "dockerd"))
    try:
        # At once: RabbitMQ's boot (~10 s) is the longest, the image copy into the new engine
        # (~7 s) runs beside it instead of after it.
        with ThreadPoolExecutor(3) as pool:
            rabbit_s = pool.submit(rabbit.start)
            redis_s = pool.submit(redis.start)
            dockerd_s = pool.submit(dockerd.start)
            started = {"dockerd_s": dockerd_s.result()}
            started["image_load_s"] = dockerd.load_images(["funtainer/python:3.11"])
            started |= {"rabbitmq_s": rabbit_s.result(), "redis_s": redis_s.result()}
        print("\n[private services] started: "
              + " ".join(f"{k}={v:.1f}" for k, v in started.items()))
        yield rabbit, redis, dockerd
    finally:
        with ThreadPoolExecutor(3) as pool:
            for stop in (dockerd.stop, rabbit.stop, redis.stop):
                pool.submit(stop)
        dockerd.remove_state()


@pytest.fixture(scope="module")
async def private(services: tuple[PrivateRabbit, PrivateRedis, PrivateDockerd],
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Private]:
    rabbit, redis, dockerd = services
    work_dir = tmp_path_factory.mktemp("ft-private-work")
    settings = Settings(amqp_url=rabbit.url, redis_url=redis.url, work_dir=work_dir,
                        docker_url=dockerd.url)
    tag = uuid.uuid4().hex[:6]
    processes = LocalCluster(
        env=settings_env(amqp_url=rabbit.url, redis_url=redis.url, port=free_port(),
                         work_dir=work_dir, user_memory_mb=1024, stem_cells=STEM_CELLS)
        | FEED_ENV | FAULT_ENV | {"FT_DOCKER_URL": dockerd.url},
        invoker_ids=[f"p{tag}-0", f"p{tag}-1"],
        log_dir=tmp_path_factory.mktemp("private-cluster-logs"),
    )
    processes.start()
    try:
        await wait_ready(processes, settings)
    except (TimeoutError, ClusterError):
        processes.stop()
        pytest.fail("the private cluster did not start\n" + processes.logs())
    cluster = Cluster(processes, f"{settings.guest_uuid}:{settings.guest_key}", settings)
    yield Private(rabbit, redis, dockerd, cluster)
    await asyncio.to_thread(processes.stop)


@pytest.fixture
async def phttp(private: Private) -> AsyncIterator[aiohttp.ClientSession]:
    cluster = private.cluster
    async with aiohttp.ClientSession(base_url=cluster.api_host, headers=cluster.auth_header,
                                     timeout=aiohttp.ClientTimeout(total=90)) as s:
        yield s


@pytest.fixture
async def pstore(private: Private) -> AsyncIterator[Store]:
    s = Store.from_url(private.redis.url)
    yield s
    await s.close()


async def _serves(http: aiohttp.ClientSession, name: str, timeout: float = 60) -> float:
    """Until a blocking invoke of ``name`` succeeds again; seconds it took."""
    start = time.monotonic()
    while True:
        try:
            async with http.post(f"{ACTIONS}/{name}?blocking=true&result=true",
                                 json={"n": -1}) as resp:
                if resp.status == 200 and await resp.json() == {"n": -1}:
                    return time.monotonic() - start
        except (aiohttp.ClientError, TimeoutError):
            pass
        assert time.monotonic() - start < timeout, f"{name} is not served again"
        await asyncio.sleep(0.5)


async def _load_under_way(
    private: Private, phttp: aiohttp.ClientSession, pstore: Store, prefix: str
) -> tuple[str, Mixed]:
    """A new 0.5 s action and 100 mixed calls of it, 8 of them done already."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await put_action(phttp, name, sleeper(0.5), timeout_ms=10_000)
    mixed = await start_mixed(phttp, private.cluster.auth, private.rabbit.url, name, 100)
    await wait_for_done(pstore, mixed.load, 8)
    return name, mixed


async def _put_action_retrying(http: aiohttp.ClientSession, name: str, code: str,
                               timeout_ms: int) -> None:
    for _ in range(60):
        try:
            await put_action(http, name, code, timeout_ms)
            return
        except (AssertionError, aiohttp.ClientError):
            await asyncio.sleep(0.5)
    raise AssertionError(f"could not create {name}")


async def test_rabbitmq_restart_loses_nothing(
    private: Private, phttp: aiohttp.ClientSession, pstore: Store
) -> None:
    name, mixed = await _load_under_way(private, phttp, pstore, "rmq")
    fault_at = time.monotonic()
    stopped_s = await asyncio.to_thread(private.rabbit.stop)
    await mixed.at_fault(pstore, "RabbitMQ restart")
    await asyncio.sleep(2.0)  # an outage, not a blink
    started_s = await asyncio.to_thread(private.rabbit.start)
    _, result, fed = await mixed.verdicts(pstore, fault_at, "RabbitMQ restart", timeout=90)
    served_s = await _serves(phttp, name)
    print(f"[RabbitMQ restart] stop_s={stopped_s:.1f} start_s={started_s:.1f} "
          f"serving_again_after_s={served_s:.1f}")
    assert result.lost == 0 and result.duplicated == 0 and fed.lost == 0
    assert result.accepted == 100


async def test_redis_kill_with_aof_loses_nothing(
    private: Private, phttp: aiohttp.ClientSession, pstore: Store
) -> None:
    name, mixed = await _load_under_way(private, phttp, pstore, "redis")
    # Counted just before the kill: the count needs the Redis about to die.
    await mixed.at_fault(pstore, "Redis SIGKILL")
    fault_at = time.monotonic()
    await asyncio.to_thread(private.redis.kill)
    await asyncio.sleep(2.0)
    started_s = await asyncio.to_thread(private.redis.start)
    _, result, fed = await mixed.verdicts(pstore, fault_at, "Redis SIGKILL (AOF always)",
                                          timeout=90)
    served_s = await _serves(phttp, name)
    print(f"[Redis SIGKILL] start_s={started_s:.1f} serving_again_after_s={served_s:.1f}")
    assert result.lost == 0 and result.duplicated == 0 and fed.lost == 0
    assert result.accepted == 100


async def test_docker_engine_restart_loses_nothing(
    private: Private, phttp: aiohttp.ClientSession, pstore: Store
) -> None:
    name, mixed = await _load_under_way(private, phttp, pstore, "dockerd")
    before = private.dockerd.containers(LABEL)
    fault_at = time.monotonic()
    stopped_s = await asyncio.to_thread(private.dockerd.stop)
    await mixed.at_fault(pstore, "Docker engine restart")
    started_s = await asyncio.to_thread(private.dockerd.start)
    _, result, fed = await mixed.verdicts(pstore, fault_at, "Docker engine restart", timeout=90)
    served_s = await _serves(phttp, name)
    # Every invoker noticed its containers died with the engine: stem cells are back, and
    # nothing of before the restart is left (exited containers are removed).
    await wait_ready(private.cluster.processes, private.cluster.settings)
    left = before & private.dockerd.containers(LABEL)
    print(f"[Docker engine restart] stop_s={stopped_s:.1f} start_s={started_s:.1f} "
          f"serving_again_after_s={served_s:.1f} containers_left_from_before={len(left)}")
    assert result.lost == 0 and result.duplicated == 0 and fed.lost == 0
    assert result.accepted == 100
    assert not left


async def test_consumer_timeout_cannot_kill_long_activations(
    private: Private, phttp: aiohttp.ClientSession, pstore: Store
) -> None:
    """RabbitMQ closes the channel of a consumer holding a delivery unacked for longer than
    ``consumer_timeout``. Invokers hold theirs until the record is written, so on a node with
    a 3 s timeout, 6 s activations (twice the timeout, and the channels are checked every
    second) and a backlog queued behind them test what that does."""
    cluster = private.cluster
    rabbit = private.rabbit
    await asyncio.to_thread(rabbit.stop)
    rabbit.consumer_timeout_ms = 3000
    await asyncio.to_thread(rabbit.start)
    name = f"long-{uuid.uuid4().hex[:6]}"
    await _put_action_retrying(phttp, name, sleeper(6.0), timeout_ms=20_000)
    # Every process is connected to the restarted node again (another action: its record
    # must not count among this load's).
    await _put_action_retrying(phttp, f"warm-{name}", sleeper(0.0), timeout_ms=5000)
    await _serves(phttp, f"warm-{name}")
    # 2 invokers x 4 slots of 256 MB: 10 calls keep a backlog waiting for a free slot.
    mixed = await start_mixed(phttp, cluster.auth, rabbit.url, name, 10, messages=20,
                              per_second=10, blocking_timeout_ms=60_000)
    fault_at = time.monotonic()
    load, result, fed = await mixed.verdicts(pstore, fault_at, "consumer_timeout 3 s",
                                             timeout=120)
    attempts = [r.attempts for r in [await pstore.get_record(i) for i in load.accepted] if r]
    print(f"[consumer_timeout 3 s] statuses={load.statuses} max_attempts={max(attempts)}")
    assert result.lost == 0 and result.duplicated == 0 and fed.lost == 0
    assert result.succeeded == result.accepted == 10
    await _serves(phttp, name)

