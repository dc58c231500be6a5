"""Runtime containers under fault, on each container backend, beside a neighbour's mixed
load: a busy container killed from outside (``docker kill``, or SIGKILL to everything in a
sandbox), an action that never answers ``/run``, one whose ``/init``
never answers. Each victim activation must end with an explicit error record, its container
must be gone, and the neighbour must see no failure at all.

The victims use memory sizes no other action here uses, so their containers (cold-started,
never stem cells) can be told apart by their memory limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import aiohttp
import pytest

from bus.models import ActivationRecord, StatusCode
from bus.store import Store
from invoker.backends.cgroups import ROOT, unified
from invoker.backends.docker import LABEL
from invoker.outcome import INIT_TIMEOUT_MESSAGE, RUN_EXITED, TIMEOUT_MESSAGE
from tests.cluster_fixtures import Cluster
from tests.faults.load import ACTIONS, put_action, sleeper, wait_for_done
from tests.faults.mixed import start_mixed

MB = 1024 * 1024
# The victim sleeps in a child process: ``sleep`` shows among its processes exactly while /run
# is under way, so the kill can wait for that instead of guessing when /init is over (a kill
# during /init is a different fault: the invoker retries it on a new container).
IN_RUN = ("import subprocess\ndef main(args):\n    subprocess.run(['sleep', '20'])\n"
          "    return {'n': args.get('n')}\n")


@pytest.fixture(scope="module", params=["docker", "sandbox"])
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """Each scenario runs on both container backends' fault clusters."""
    found: Cluster = request.getfixturevalue(f"{request.param}_fault_cluster")
    return found


@pytest.fixture
async def store(cluster: Cluster) -> AsyncIterator[Store]:
    s = Store.from_url(cluster.settings.redis_url)
    yield s
    await s.close()


class Containers(Protocol):
    """The runtime containers of some invokers, as the host sees them."""

    def with_memory(self, memory_mb: int) -> set[str]: ...
    def running_action(self, container: str) -> bool: ...
    def kill(self, containers: list[str]) -> None: ...


class DockerContainers:
    def __init__(self, invoker_ids: list[str]) -> None:
        self.invoker_ids = invoker_ids

    def with_memory(self, memory_mb: int) -> set[str]:
        found: set[str] = set()
        for invoker_id in self.invoker_ids:
            ids = subprocess.run(["docker", "ps", "-aq", "--filter",
                                  f"label={LABEL}={invoker_id}"],
                                 check=True, capture_output=True, text=True).stdout.split()
            if not ids:
                continue
            inspected = json.loads(subprocess.run(["docker", "inspect", *ids],
                                                  capture_output=True, text=True).stdout
                                   or "[]")
            found |= {c["Id"] for c in inspected
                      if c["HostConfig"]["Memory"] == memory_mb * MB}
        return found

    def running_action(self, container: str) -> bool:
        top = subprocess.run(["docker", "top", container], capture_output=True,
                             text=True).stdout
        return any(line.split()[-2:] == ["sleep", "20"] for line in top.splitlines()[1:])

    def kill(self, containers: list[str]) -> None:
        subprocess.run(["docker", "kill", *containers], check=True, capture_output=True)


class SandboxContainers:
    """Sandboxes are their cgroups: ``funtainer/<invoker id>/<pool id>`` (the zygote's own
    group is no container)."""

    def __init__(self, invoker_ids: list[str]) -> None:
        memory = ROOT if unified() else ROOT / "memory"
        self.roots = [memory / "funtainer" / invoker_id for invoker_id in invoker_ids]
        self.limit_file = "memory.max" if unified() else "memory.limit_in_bytes"

    def with_memory(self, memory_mb: int) -> set[str]:
        found = set()
        for root in self.roots:
            for group in root.glob("c*"):
                with contextlib.suppress(OSError):
                    # An empty group is no sandbox: the backend keeps it for another one.
                    if (int((group / self.limit_file).read_text()) == memory_mb * MB
                            and self._pids(str(group))):
                        found.add(str(group))
        return found

    def _pids(self, container: str) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(p) for p in Path(container, "cgroup.procs").read_text().split()]
        return []

    def running_action(self, container: str) -> bool:
        for pid in self._pids(container):
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [
                        b"sleep", b"20"]:
                    return True
        return False

    def kill(self, containers: list[str]) -> None:
        """What ``docker kill`` does to a container: SIGKILL to everything in it."""
        for container in containers:
            for pid in self._pids(container):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _containers(cluster: Cluster) -> Containers:
    if cluster.settings.container_backend == "sandbox":
        return SandboxContainers(cluster.invoker_ids)
    return DockerContainers(cluster.invoker_ids)


async def _start(http: aiohttp.ClientSession, name: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        async with http.post(f"{ACTIONS}/{name}", json={"n": n}) as resp:
            assert resp.status == 202, await resp.text()
            ids.append((await resp.json())["activationId"])
    return ids


async def _records(store: Store, ids: list[str], timeout: float) -> dict[str, ActivationRecord]:
    records: dict[str, ActivationRecord] = {}
    deadline = time.monotonic() + timeout
    while len(records) < len(ids) and time.monotonic() < deadline:
        for aid in ids:
            if aid not in records and (record := await store.get_record(aid)) is not None:
                records[aid] = record
        await asyncio.sleep(0.2)
    return records


async def _until_gone(containers: Containers, memory_mb: int, timeout: float = 60) -> int:
    """How many such containers are left after waiting (up to ``timeout``) for none."""
    deadline = time.monotonic() + timeout
    while True:
        left = await asyncio.to_thread(containers.with_memory, memory_mb)
        if not left or time.monotonic() > deadline:
            return len(left)
        await asyncio.sleep(0.2)


def _print(label: str, ids: list[str], records: dict[str, ActivationRecord],
           containers_left: int, elapsed: float) -> None:
    failed = sum(1 for r in records.values() if not r.response.success)
    print(f"[{label}] victims: accepted={len(ids)} succeeded={len(records) - failed} "
          f"failed_explicit={failed} lost={len(ids) - len(records)} duplicated=0 "
          f"containers_left={containers_left} recovery_s={elapsed:.1f}")


async def test_docker_kill_of_busy_containers(
    cluster: Cluster, http: aiohttp.ClientSession, store: Store
) -> None:
    neighbour = f"nb-{uuid.uuid4().hex[:6]}"
    victim = f"killed-{uuid.uuid4().hex[:6]}"
    await put_action(http, neighbour, sleeper(0.2), timeout_ms=5000)
    # Not retried (asynchronous invocations are, by default): the kill's own error must show.
    await put_action(http, victim, IN_RUN, timeout_ms=60_000, memory=384,
                     annotations={"maxRetries": 0})
    mixed = await start_mixed(http, cluster.auth, cluster.settings.amqp_url, neighbour, 60)
    ids = await _start(http, victim, 2)
    # Each victim is killed as soon as it runs: with the neighbour's load they may run one
    # after the other, and may have to wait behind that load for a container.
    deadline = time.monotonic() + 90
    killed: set[str] = set()
    fault_at = 0.0
    host = _containers(cluster)
    while len(killed) < len(ids):
        assert time.monotonic() < deadline, f"only {len(killed)} victims ever started running"
        containers = await asyncio.to_thread(host.with_memory, 384)
        running = [c for c in containers - killed
                   if await asyncio.to_thread(host.running_action, c)]
        if running:
            await asyncio.to_thread(host.kill, running)
            killed.update(running)
            fault_at = fault_at or time.monotonic()
        await asyncio.sleep(0.2)
    await mixed.at_fault(store, "docker kill: neighbour")
    records = await _records(store, ids, timeout=90)
    elapsed = time.monotonic() - fault_at
    left = await _until_gone(host, 384)
    _print(f"kill of busy containers ({cluster.settings.container_backend})", ids, records,
           left, elapsed)
    _, result, fed = await mixed.verdicts(store, fault_at, "docker kill: neighbour")
    assert len(records) == len(ids), "a killed container's activation has no record"
    for record in records.values():
        assert record.response.status_code == StatusCode.DEVELOPER_ERROR
        assert record.response.result == {"error": RUN_EXITED}
    assert left == 0, "the pool kept a killed container"
    assert result.lost == 0 and result.duplicated == 0 and result.failed_explicit == 0
    assert fed.lost == 0


async def test_hanging_run_and_init_are_bounded_by_the_timeout(
    cluster: Cluster, http: aiohttp.ClientSession, store: Store
) -> None:
    neighbour = f"nb-{uuid.uuid4().hex[:6]}"
    hangs_in_run = f"hang-run-{uuid.uuid4().hex[:6]}"
    hangs_in_init = f"hang-init-{uuid.uuid4().hex[:6]}"
    await put_action(http, neighbour, sleeper(0.2), timeout_ms=5000)
    await put_action(http, hangs_in_run, "import time\ndef main(args):\n"
                     "    while True:\n        time.sleep(1)\n", timeout_ms=2000, memory=320)
    await put_action(http, hangs_in_init, "import time\nwhile True:\n    time.sleep(1)\n"
                     "def main(args):\n    return args\n", timeout_ms=2000, memory=448)
    mixed = await start_mixed(http, cluster.auth, cluster.settings.amqp_url, neighbour, 60)
    await wait_for_done(store, mixed.load, 4)
    run_ids = await _start(http, hangs_in_run, 2)
    init_ids = await _start(http, hangs_in_init, 2)
    fault_at = time.monotonic()
    await mixed.at_fault(store, "hanging proxies: neighbour")
    records = await _records(store, run_ids + init_ids, timeout=90)
    elapsed = time.monotonic() - fault_at
    host = _containers(cluster)
    left = await _until_gone(host, 320) + await _until_gone(host, 448)
    _print(f"hanging /run and /init ({cluster.settings.container_backend})",
           run_ids + init_ids, records, left, elapsed)
    _, result, fed = await mixed.verdicts(store, fault_at, "hanging proxies: neighbour")
    assert len(records) == 4
    for aid in run_ids:
        assert records[aid].response.result == {"error": TIMEOUT_MESSAGE.format(ms=2000)}
    for aid in init_ids:
        assert records[aid].response.result == {"error": INIT_TIMEOUT_MESSAGE.format(ms=2000)}
    assert left == 0, "a timed-out container was kept"
    assert result.lost == 0 and result.duplicated == 0 and result.failed_explicit == 0
    assert fed.lost == 0
