"""Prometheus metrics as an operator scrapes them from a running cluster: the gateway's
``/metrics`` (the cluster's activation metrics, an administrator's key) and each initializer's
and invoker's own port. Counters must move by exactly what was done."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bus.models import NamespaceAuth, NamespaceLimits
from bus.store import Store
from tests.cluster_fixtures import Cluster

ACTIONS = "/api/v1/namespaces/_/actions"
HELLO = "def main(args):\n    print('hello', args.get('i'))\n    return {'i': args.get('i')}\n"
INVOKES = 100


@dataclass
class Tenant:
    http: aiohttp.ClientSession
    namespace: str
    key: str  # uuid:key


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture
async def tenant(docker_cluster: Cluster, store: Store) -> AsyncIterator[Tenant]:
    """A namespace of its own with the action ``hello``."""
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32),
                         namespace=f"met-{uuid.uuid4().hex[:8]}")
    await store.put_auth(auth)
    headers = {"Authorization": aiohttp.encode_basic_auth(auth.uuid, auth.key)}
    async with aiohttp.ClientSession(base_url=docker_cluster.api_host, headers=headers) as http:
        async with http.put(f"{ACTIONS}/hello", json={"exec": {"kind": "python:3.11",
                                                                "code": HELLO}}) as resp:
            assert resp.status == 200, await resp.text()
        yield Tenant(http, auth.namespace, f"{auth.uuid}:{auth.key}")


@pytest.fixture
async def admin(docker_cluster: Cluster, store: Store) -> AsyncIterator[Tenant]:
    """A key of whisk.system, which the default settings make an administrator."""
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32),
                         namespace="whisk.system")
    await store.put_auth(auth)
    headers = {"Authorization": aiohttp.encode_basic_auth(auth.uuid, auth.key)}
    async with aiohttp.ClientSession(base_url=docker_cluster.api_host, headers=headers) as http:
        yield Tenant(http, auth.namespace, f"{auth.uuid}:{auth.key}")


async def scrape(http: aiohttp.ClientSession, url: str = "/metrics") -> Samples:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return parse(await resp.text())


async def scrape_processes(cluster: Cluster) -> dict[str, Samples]:
    """Every live process's own metrics (tests before may have killed the first initializer
    and started a replacement, which has a port of its own too)."""
    processes = cluster.processes
    live = {name: port for name, port in processes.metrics_ports.items()
            if processes.procs[name].poll() is None}
    assert set(cluster.invoker_ids) <= set(live)
    assert any(name.startswith("initializer") for name in live)
    async with aiohttp.ClientSession() as http:
        return {name: await scrape(http, f"http://127.0.0.1:{port}/metrics")
                for name, port in live.items()}


async def test_metrics_want_an_administrators_key(
    docker_cluster: Cluster, tenant: Tenant, admin: Tenant
) -> None:
    async with aiohttp.ClientSession(base_url=docker_cluster.api_host) as anonymous, \
            anonymous.get("/metrics") as resp:
        assert resp.status == 401
        assert "error" in await resp.json()
    async with tenant.http.get("/metrics") as resp:
        assert resp.status == 403
    assert total(await scrape(admin.http), "process_cpu_seconds_total") > 0


async def test_counters_move_by_exactly_the_invokes(
    docker_cluster: Cluster, tenant: Tenant, admin: Tenant, store: Store
) -> None:
    ns = tenant.namespace
    before = await scrape(admin.http)
    processes_before = await scrape_processes(docker_cluster)

    async def invoke(i: int) -> None:
        async with tenant.http.post(f"{ACTIONS}/hello", json={"i": i}) as resp:
            assert resp.status == 202, await resp.text()

    await asyncio.gather(*(invoke(i) for i in range(INVOKES)))
    deadline = time.monotonic() + 60
    while await store.count_records(ns) < INVOKES:
        assert time.monotonic() < deadline, "the activations did not all finish"
        await asyncio.sleep(0.2)
    records = await store.list_records(ns, limit=INVOKES + 10)
    assert len(records) == INVOKES
    cold = sum(1 for r in records if r.annotation("initTime") is not None)
    assert cold >= 1  # a new action: its first activation initialized a container

    def moved(after: Samples, name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    deadline = time.monotonic() + 10
    after = await scrape(admin.http)
    while moved(after, "openwhisk_action_activations_total", namespace=ns) < INVOKES:
        assert time.monotonic() < deadline, "the samples did not all reach the gateway"
        await asyncio.sleep(0.2)
        after = await scrape(admin.http)
    await asyncio.sleep(1.0)  # nothing more may arrive: exactly one sample per record
    after = await scrape(admin.http)

    assert moved(after, "openwhisk_action_activations_total", namespace=ns,
                 action="hello", kind="python:3.11", memory="256") == INVOKES
    assert moved(after, "openwhisk_action_activations_total", namespace=ns) == INVOKES
    assert moved(after, "openwhisk_action_status_total", namespace=ns,
                 status="success") == INVOKES
    assert moved(after, "openwhisk_action_coldStarts_total", namespace=ns) == cold
    assert moved(after, "openwhisk_action_initTime_seconds_count", namespace=ns) == cold
    assert moved(after, "openwhisk_action_duration_seconds_count", namespace=ns) == INVOKES
    assert moved(after, "openwhisk_action_waitTime_seconds_count", namespace=ns) == INVOKES
    assert moved(after, "ft_gateway_invoke_seconds_count", blocking="false") >= INVOKES

    # The processes' own ports: every activation was placed once and started once.
    processes = await scrape_processes(docker_cluster)

    def moved_in(name: str, metric: str, **labels: str) -> float:
        return (total(processes[name], metric, **labels)
                - total(processes_before.get(name, {}), metric, **labels))

    initializers = [name for name in processes if name.startswith("initializer")]
    assert sum(moved_in(name, "ft_initializer_placements_total")
               for name in initializers) == INVOKES
    for name in initializers:
        # Other tests may have started invokers of their own on this cluster's broker.
        assert total(processes[name], "ft_initializer_invokers", state="up") >= 2
    starts = sum(moved_in(i, "ft_invoker_container_starts_total", kind="python:3.11")
                 for i in docker_cluster.invoker_ids)
    assert starts == INVOKES
    finished = sum(moved_in(i, "ft_invoker_activations_total", status="success")
                   for i in docker_cluster.invoker_ids)
    assert finished == INVOKES
    for invoker_id in docker_cluster.invoker_ids:
        pool = processes[invoker_id]
        assert total(pool, "ft_invoker_memory_used_mb") + total(
            pool, "ft_invoker_memory_free_mb") == 4096
        assert total(pool, "ft_invoker_containers") >= 1


async def test_throttled_invokes_are_counted(
    docker_cluster: Cluster, tenant: Tenant, admin: Tenant, store: Store
) -> None:
    ns = tenant.namespace
    await store.set_limits(ns, NamespaceLimits(invocationsPerMinute=1))
    if time.time() % 60 > 55:  # both requests in one calendar minute
        await asyncio.sleep(60.5 - time.time() % 60)
    before = await scrape(admin.http)
    statuses = []
    for i in range(3):
        async with tenant.http.post(f"{ACTIONS}/hello", json={"i": i}) as resp:
            statuses.append(resp.status)
    assert statuses == [202, 429, 429]
    after = await scrape(admin.http)
    assert total(after, "openwhisk_action_limit_timed_total", namespace=ns) == 2
    assert total(after, "openwhisk_action_limit_concurrent_total", namespace=ns) == 0
    assert (total(after, "ft_gateway_responses_total", code="429")
            - total(before, "ft_gateway_responses_total", code="429")) == 2


async def test_ft_top_shows_the_namespaces_numbers(
    docker_cluster: Cluster, tenant: Tenant, tmp_path: Path
) -> None:
    """`ft top --once`, as a user runs it with their key, after three invokes."""
    for i in range(3):
        async with tenant.http.post(f"{ACTIONS}/hello?blocking=true", json={"i": i}) as resp:
            assert resp.status == 200

    def ft_top() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "top", "--once", "--apihost",
             docker_cluster.api_host, "--auth", tenant.key],
            env={**os.environ, "WSK_CONFIG_FILE": str(tmp_path / "wskprops")},
            cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True,
            timeout=60)

    deadline = time.monotonic() + 10
    while True:
        done = await asyncio.to_thread(ft_top)
        assert done.returncode == 0, done.stderr
        if "3 activations" in done.stdout or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert f"namespace {tenant.namespace}" in done.stdout
    assert "last 5 min: 3 activations, 0 errors, 1 cold starts" in done.stdout
    assert done.stdout.count(" hello ") == 3
    for invoker_id in docker_cluster.invoker_ids:
        assert invoker_id in done.stdout


async def test_an_administrators_dashboard_sees_every_namespace(
    docker_cluster: Cluster, tenant: Tenant, admin: Tenant
) -> None:
    async with tenant.http.post(f"{ACTIONS}/hello?blocking=true", json={"i": 1}) as resp:
        assert resp.status == 200
        activation_id = (await resp.json())["activationId"]

    async def snapshot(who: Tenant) -> dict:
        async with who.http.get("/api/v1/namespaces/_/dashboard") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    deadline = time.monotonic() + 10
    while activation_id not in [a["activationId"] for a in (await snapshot(admin))["latest"]]:
        assert time.monotonic() < deadline, "the administrator never saw the activation"
        await asyncio.sleep(0.3)
    seen = await snapshot(admin)
    assert seen["admin"] is True
    assert tenant.namespace in {a["namespace"] for a in seen["latest"]}
    own = await snapshot(tenant)
    assert own["admin"] is False
    assert {a["namespace"] for a in own["latest"]} == {tenant.namespace}
    assert own["series"]["totals"]["activations"] <= seen["series"]["totals"]["activations"]
