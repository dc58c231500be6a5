"""The end-to-end tests here run once per container backend: on the session's Docker
cluster and on the same cluster on the sandbox backend (tests/cluster_fixtures.py). Tests of
one backend's own mechanics ask for ``docker_cluster`` or ``sandbox_cluster`` by name."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bus.broker import Broker
from bus.config import Settings
from bus.store import Store
from tests.cluster_fixtures import Cluster


@pytest.fixture(scope="session", params=["docker", "sandbox"])
def cluster(request: pytest.FixtureRequest) -> Cluster:
    found: Cluster = request.getfixturevalue(f"{request.param}_cluster")
    return found


# For a test of what no container backend takes part in (the initializer's schedules and feed
# ownership, throttle counting, the CLI's requests, web action routing): once, on the Docker
# cluster, saves the suite the second run.
BACKEND_NEUTRAL = pytest.mark.parametrize("cluster", ["docker"], indirect=True)


def _settings_of_test(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """The cluster's settings (its vhost and Redis database) for a test on a cluster, the
    session's for one that starts its own gateway."""
    if "cluster" in request.fixturenames:
        return request.getfixturevalue("cluster").settings  # type: ignore[no-any-return]
    return settings


@pytest.fixture
async def store(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Store]:
    s = Store.from_url(_settings_of_test(request, settings).redis_url)
    yield s
    await s.close()


@pytest.fixture
async def broker(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Broker]:
    b = await Broker.connect(_settings_of_test(request, settings).amqp_url, name="test")
    yield b
    await b.close()
