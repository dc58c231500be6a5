"""Exhausting what a container is given: processes, memory, CPU time, log volume and result
size. Each ends in a clear activation error (or a cut, for logs), the container that misbehaved
is destroyed where the platform's rules say so, and the next activation works."""

from __future__ import annotations

import asyncio
import time

from bus.config import Settings
from bus.store import Store
from invoker.outcome import (
    LOGS_TRUNCATED,
    MAX_RESULT_BYTES,
    OUT_OF_MEMORY,
    RUN_EXITED,
    TIMEOUT_MESSAGE,
)
from tests.cluster_fixtures import Cluster
from tests.hostile.harness import (
    Engine,
    NeighbourLoad,
    Tenant,
    Watch,
    result_of,
    succeeded,
    under_attack,
    unique,
)

CALM = "    if args.get('calm'):\n        return {'host': os.uname().nodename}\n"

FORK_BOMB = r'''
import os, subprocess, time

def main(args):
''' + CALM + r'''
    # A shell fork bomb: small processes, so that the pids limit, not memory, is what stops it.
    subprocess.Popen(["/bin/sh", "-c", "bomb() { bomb | bomb & }; bomb"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:  # and the action keeps forking too, until its time is up
        try:
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
        except OSError:
            time.sleep(0.005)
'''

MEMORY_BOMB = r'''
import os, subprocess, sys

HOARD = "hoard = []\nwhile True:\n    hoard.append(b'x' * (8 << 20))\n"

def main(args):
''' + CALM + r'''
    if args.get("in_child"):
        child = subprocess.run([sys.executable, "-c", HOARD])
        return {"child_returncode": child.returncode}
    exec(HOARD)
'''

# The same, while the action's module is being loaded (/init).
MEMORY_BOMB_AT_INIT = "hoard = []\nwhile True:\n    hoard.append(b'x' * (8 << 20))\n"

CPU_SPIN = r'''
import os

def main(args):
''' + CALM + r'''
    for _ in range((os.cpu_count() or 2) - 1):  # one spinning process per core
        if os.fork() == 0:
            while True:
                pass
    while True:
        pass
'''

CHATTY = r'''
def main(args):
    line = "y" * 1023
    for _ in range(args["lines"]):
        print(line)
    return {"printed": args["lines"] * 1024}
'''

HUGE_RESULT = r'''
def main(args):
    return {"blob": "z" * args["size"]}
'''

# The proxy runs in the action's own process, so an action can answer /run itself, on the
# proxy's connection, with whatever Content-Length it likes: only the invoker can refuse it.
RAW_RESULT = r'''
import gc, os

def main(args):
    handler = next(o for o in gc.get_objects() if type(o).__name__ == "Handler")
    size = args["size"]
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
    handler.connection.sendall(head % size)
    chunk = b" " * (1 << 20)
    while size > 0:
        handler.connection.sendall(chunk[:size])
        size -= len(chunk)
    os._exit(0)
'''


async def _watch_pids(engine: Engine, stop: asyncio.Event) -> dict[str, int]:
    """The highest task count seen per container of the cluster, read from the host's
    cgroup files every 0.1 s; the engine is asked for the list of containers every 0.5 s."""
    peaks: dict[str, int] = {}
    containers: list[str] = []
    listed = 0.0
    while not stop.is_set():
        if time.monotonic() - listed > 0.5:
            containers = await asyncio.to_thread(engine.containers)
            listed = time.monotonic()
        for cid in containers:
            pids = await asyncio.to_thread(engine.pids, cid)  # the engine is asked once
            if pids is not None:
                peaks[cid] = max(peaks.get(cid, 0), pids)
        await asyncio.sleep(0.1)
    return peaks


def _developer_error(record: dict[str, object]) -> str:
    response = record["response"]
    assert isinstance(response, dict)
    assert response["status"] == "action developer error", response
    return str(response["result"]["error"])  # type: ignore[index]


async def test_fork_bomb(
    attacker: Tenant, neighbour: NeighbourLoad, engine: Engine, settings: Settings
) -> None:
    """The pids limit holds; the activation ends with a timeout (or, if the bomb made the
    proxy itself fail, with that error), and its container is destroyed, never reused."""
    name = unique("forkbomb")
    await attacker.create(name, FORK_BOMB, limits={"timeout": 3000})
    limit = settings.container_pids_limit
    timeout_error = TIMEOUT_MESSAGE.format(ms=3000)

    async def bomb(watch: Watch) -> None:
        stop = asyncio.Event()
        watcher = asyncio.create_task(_watch_pids(engine, stop))
        record = await attacker.invoke(name)
        stop.set()
        peaks = await watcher
        error = _developer_error(record)
        watch.held(error in (timeout_error, OUT_OF_MEMORY, RUN_EXITED), f"error {error!r}")
        bombed = [cid for cid, peak in peaks.items() if peak > limit // 2]
        assert len(bombed) == 1, f"cannot tell which container ran the bomb: {peaks}"
        watch.held(peaks[bombed[0]] <= limit, f"{peaks[bombed[0]]} tasks, limit {limit}")
        watch.held(await engine.wait_gone(bombed[0]), "the bombed container was kept")
        calm = await attacker.invoke(name, {"calm": True})
        watch.held(succeeded(calm), f"the next activation failed: {calm['response']}")
        watch.held(not bombed[0].startswith(result_of(calm)["host"]), "the container was reused")
        print(f"fork bomb: {error!r}; peak tasks {peaks[bombed[0]]} (limit {limit})")

    await under_attack(neighbour, "fork-bomb", bomb)


async def test_memory_bomb(attacker: Tenant, neighbour: NeighbourLoad, store: Store) -> None:
    """The kernel kills the action's process at the container's memory limit (no swap: memory
    equals memory+swap) and the invoker reports it as OpenWhisk does. A bomb in a child
    process only costs that child: the OOM killer picks the biggest process."""
    name = unique("membomb")
    await attacker.create(name, MEMORY_BOMB, limits={"memory": 128, "timeout": 20_000})

    async def hoard(watch: Watch) -> None:
        record = await attacker.invoke(name)
        error = _developer_error(record)
        watch.held(error == OUT_OF_MEMORY, f"error {error!r}")
        calm = await attacker.invoke(name, {"calm": True})
        watch.held(succeeded(calm), f"the next activation failed: {calm['response']}")
        stored = await store.get_record(calm["activationId"])
        watch.held(stored is not None and stored.container_start != "warm",
                   "the killed container was reused")
        child = await attacker.invoke(name, {"in_child": True})
        watch.held(succeeded(child) and result_of(child) == {"child_returncode": -9},
                   f"a hoarding child: {child['response']}")
        at_init = await attacker.invoke(init_bomb)
        error = _developer_error(at_init)
        watch.held(error == OUT_OF_MEMORY, f"error at init {error!r}")

    init_bomb = unique("membomb-init")
    await attacker.create(init_bomb, MEMORY_BOMB_AT_INIT, limits={"memory": 128})
    await under_attack(neighbour, "memory-bomb", hoard)


async def test_cpu_spin_past_the_timeout(
    attacker: Tenant, neighbour: NeighbourLoad, store: Store
) -> None:
    """Every core spun (one process each) until the timeout: a developer error with OpenWhisk's
    message, the container destroyed with its spinning children, and the next one works."""
    name = unique("spin")
    await attacker.create(name, CPU_SPIN, limits={"timeout": 2000})

    async def spin(watch: Watch) -> None:
        started = time.monotonic()
        record = await attacker.invoke(name)
        elapsed = time.monotonic() - started
        error = _developer_error(record)
        watch.held(error == TIMEOUT_MESSAGE.format(ms=2000), f"error {error!r}")
        watch.held(elapsed < 2 + 5, f"the timeout took {elapsed:.1f} s to take effect")
        calm = await attacker.invoke(name, {"calm": True})
        watch.held(succeeded(calm), f"the next activation failed: {calm['response']}")
        stored = await store.get_record(calm["activationId"])
        watch.held(stored is not None and stored.container_start != "warm",
                   "the timed-out container was reused")

    await under_attack(neighbour, "cpu-spin", spin)


async def test_huge_stdout_is_cut_at_the_log_limit(
    attacker: Tenant, neighbour: NeighbourLoad, store: Store
) -> None:
    """12 MB of output against the 10 MB limit: the activation succeeds and its logs end with
    OpenWhisk's truncation line. (The record is read from the store: parsing 10 MB of JSON
    here would cost this host's CPU, which the neighbour shares, for nothing.)"""
    name = unique("chatty")
    await attacker.create(name, CHATTY)
    limit = 10 * 1024 * 1024
    truncated = LOGS_TRUNCATED.format(n=limit)

    async def flood(watch: Watch) -> None:
        activation_id = await attacker.invoke_for_id(name, {"lines": 12 * 1024})
        record = await store.get_record(activation_id)
        assert record is not None
        watch.held(record.response.success, f"the activation failed: {record.response}")
        logs = record.logs
        watch.held(logs[-1].endswith(f" stderr: {truncated}"), f"last line {logs[-1][:120]!r}")
        watch.held(sum(truncated in line for line in logs) == 1, "more than one truncation line")
        size = sum(len(line) + 1 for line in logs)
        watch.held(size <= limit + 200, f"{size} bytes of logs kept")
        print(f"huge stdout: {len(logs)} lines, {size} bytes kept")

    await under_attack(neighbour, "huge-stdout", flood, known_slowdown=(
        "the record's 10 MB of logs is packed for Redis, packed again for the gateway's reply "
        "and JSON-encoded for activation events on the invoker's event loop (~100 ms), and "
        "unpacked on the gateway's, stalling the neighbour's activations meanwhile"))


async def test_huge_result_is_refused(attacker: Tenant, neighbour: NeighbourLoad) -> None:
    name = unique("bigresult")
    await attacker.create(name, HUGE_RESULT)

    async def oversize(watch: Watch) -> None:
        while await watch.again():
            record = await attacker.invoke(name, {"size": 2 * MAX_RESULT_BYTES})
            response = record["response"]
            error = str(response["result"].get("error", ""))
            watch.held(response["status"] == "application error"
                       and "exceeded the allowed length" in error, f"{response['status']}")
            watch.held(len(error) < 4096, f"an error of {len(error)} bytes")
            small = await attacker.invoke(name, {"size": 10})
            watch.held(succeeded(small), f"a small result failed: {small['response']}")

    await under_attack(neighbour, "huge-result", oversize)


async def test_a_result_streamed_past_the_proxy_does_not_swell_the_invoker(
    attacker: Tenant, neighbour: NeighbourLoad, cluster: Cluster, store: Store
) -> None:
    name = unique("rawresult")
    await attacker.create(name, RAW_RESULT)
    size = 256 * 1024 * 1024

    def peaks() -> dict[str, int]:
        return {i: _peak_rss_kb(cluster.processes.procs[i].pid) for i in cluster.invoker_ids}

    async def stream(watch: Watch) -> None:
        before = await asyncio.to_thread(peaks)
        record = await attacker.invoke(name, {"size": size})
        stored = await store.get_record(record["activationId"])
        assert stored is not None and stored.invoker is not None
        grown_mb = (await asyncio.to_thread(peaks))[stored.invoker] - before[stored.invoker]
        grown_mb //= 1024
        watch.held(grown_mb < 64, f"the invoker's peak memory grew by {grown_mb} MB")
        watch.held(record["response"]["status"] != "success", "a 256 MB result was accepted")

    await under_attack(
        neighbour, "raw-result", stream,
        known_slowdown=(
            "the invoker cuts the oversized answer off and destroys the container; that "
            "removal and its replacement fall inside a ~1 s window with a handful of neighbour "
            "calls"),
    )


def _peak_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")
