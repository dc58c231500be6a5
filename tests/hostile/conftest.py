"""Hostile functions run on a real cluster in an `attacker` namespace, once on each container
backend (the end-to-end suite's Docker cluster, and the same on the sandbox backend), while a
`neighbour` namespace's action is invoked back to back in a process of its own. Both are
tenants of their own (uuid, 64-character key), with invocation throttles raised as an
operator would for a load test: the neighbour alone makes thousands of calls a minute."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from bus.config import Settings
from bus.models import NamespaceAuth, NamespaceLimits
from bus.store import Store
from tests.cluster_fixtures import Cluster
from tests.hostile.harness import (
    REPORT_LINES,
    Engine,
    NeighbourLoad,
    SandboxEngine,
    Tenant,
    succeeded,
)
from tests.hostile.neighbour import ACTION_CODE

REPO = Path(__file__).resolve().parents[2]
NEIGHBOUR_ACTION = "victim"
LOAD_TEST_LIMITS = NamespaceLimits(invocationsPerMinute=1_000_000, concurrentInvocations=100)


async def _new_tenant(settings: Settings, namespace: str) -> NamespaceAuth:
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32), namespace=namespace)
    store = Store.from_url(settings.redis_url)
    try:
        await store.put_auth(auth)
        await store.set_limits(namespace, LOAD_TEST_LIMITS)
    finally:
        await store.close()
    return auth


def _session(cluster: Cluster, auth: NamespaceAuth) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        base_url=cluster.api_host,
        headers={"Authorization": aiohttp.encode_basic_auth(auth.uuid, auth.key)},
    )


@pytest.fixture(scope="session", params=["docker", "sandbox"])
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """The cluster under attack: every test here runs once per container backend, on the
    session's cluster of that backend (tests/cluster_fixtures.py)."""
    found: Cluster = request.getfixturevalue(f"{request.param}_cluster")
    return found


@pytest.fixture
async def store(cluster: Cluster) -> AsyncIterator[Store]:
    s = Store.from_url(cluster.settings.redis_url)
    yield s
    await s.close()


@pytest.fixture(scope="session")
async def neighbour(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[NeighbourLoad]:
    auth = await _new_tenant(cluster.settings, "neighbour")
    secret = f"nbr-{secrets.token_hex(16)}"
    async with _session(cluster, auth) as session:
        tenant = Tenant(session, auth.namespace)
        await tenant.create(NEIGHBOUR_ACTION, ACTION_CODE, parameters=[
            {"key": "NEIGHBOUR_SECRET", "value": secret, "init": True}])
        assert succeeded(await tenant.invoke(NEIGHBOUR_ACTION))
    samples = tmp_path_factory.mktemp("neighbour") / "samples.txt"
    samples.touch()
    process = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "tests.hostile.neighbour", cluster.api_host,
         f"{auth.uuid}:{auth.key}", NEIGHBOUR_ACTION, str(samples)],
        cwd=REPO,
    )
    try:
        yield NeighbourLoad(samples, process, secret, auth.namespace, f"{auth.uuid}:{auth.key}",
                            NEIGHBOUR_ACTION, cluster.api_host,
                            cluster.settings.container_backend)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
async def attacker(cluster: Cluster) -> AsyncIterator[Tenant]:
    auth = await _new_tenant(cluster.settings, "attacker")
    async with _session(cluster, auth) as session:
        yield Tenant(session, auth.namespace)


@pytest.fixture(scope="session")
def engine(cluster: Cluster) -> Iterator[Engine]:
    settings = cluster.settings
    api = (SandboxEngine(settings.docker_url, cluster.invoker_ids, settings.sandbox_dir)
           if settings.container_backend == "sandbox"
           else Engine(settings.docker_url, cluster.invoker_ids))
    yield api
    api.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT_LINES:
        terminalreporter.section("hostile functions: what was tried and what held")
        for line in REPORT_LINES:
            terminalreporter.write_line(line)
