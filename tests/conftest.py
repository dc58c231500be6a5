"""Shared fixtures. Every test session gets its own RabbitMQ vhost and its own Redis database,
so several sessions (and a running `ft up`) can share one broker and one Redis."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest
import redis

from bus.broker import Broker
from bus.config import Settings
from bus.store import Store

# The end-to-end cluster fixtures, defined once for the whole tree: a fixture re-exported by
# another conftest would be a second definition, and start a second cluster.
pytest_plugins = ["tests.cluster_fixtures", "tests.early_scenarios"]

RABBIT = "amqp://guest:guest@127.0.0.1:5672"
REDIS = "redis://127.0.0.1:6379"


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True)


@contextmanager
def fresh_vhost(prefix: str) -> Iterator[str]:
    """A RabbitMQ vhost of our own for the duration; yields its AMQP URL."""
    vhost = f"{prefix}-{uuid.uuid4().hex[:8]}"
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"{RABBIT}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


@contextmanager
def claimed_redis_db() -> Iterator[str]:
    """A Redis database no other test session holds (a lock key claims it), flushed before
    and after; yields its URL."""
    lock = f"ft-test-{uuid.uuid4().hex}"
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS}/{db}")
        if client.set("ft:test-lock", lock, nx=True, ex=3600):
            client.flushdb()
            client.set("ft:test-lock", lock, ex=3600)
            try:
                yield f"{REDIS}/{db}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    pytest.fail("no free Redis database for this test session")


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    with fresh_vhost("ft-test") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with claimed_redis_db() as url:
        yield url


@pytest.fixture(scope="session")
def settings(amqp_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        amqp_url=amqp_url,
        redis_url=redis_url,
        work_dir=tmp_path_factory.mktemp("ft-work"),
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    s = Store.from_url(settings.redis_url)
    yield s
    await s.close()


@pytest.fixture
async def broker(settings: Settings) -> AsyncIterator[Broker]:
    b = await Broker.connect(settings.amqp_url, name="test")
    yield b
    await b.close()
