"""Fault injection under load: an invoker killed, an invoker frozen, the initializer killed.
Each prints its counts; every accepted activation must end with exactly one record."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid

import aiohttp

from bus.store import Store
from invoker.backends.docker import LABEL
from tests.cluster_fixtures import Cluster, ExtraInitializers
from tests.faults.conftest import wait_ready
from tests.faults.load import ACTIONS, put_action, sleeper, wait_for_done
from tests.faults.mixed import start_mixed

NS = "guest"


def _containers(invoker_id: str) -> set[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL}={invoker_id}"],
                         check=True, capture_output=True, text=True).stdout
    return set(out.split())


async def _states(http: aiohttp.ClientSession) -> dict[str, str]:
    async with http.get("/invokers") as resp:
        assert resp.status == 200
        return dict(await resp.json())


async def _until_state(http: aiohttp.ClientSession, invoker_id: str, state: str,
                       timeout: float = 20) -> float:
    start = time.monotonic()
    while (await _states(http)).get(invoker_id) != state:
        assert time.monotonic() - start < timeout, f"{invoker_id} never became {state}"
        await asyncio.sleep(0.2)
    return time.monotonic() - start


async def _serves(http: aiohttp.ClientSession, name: str) -> None:
    async with http.post(f"{ACTIONS}/{name}?blocking=true&result=true", json={"n": -1}) as resp:
        assert resp.status == 200, await resp.text()
        assert await resp.json() == {"n": -1}


async def test_invokers_route_lists_every_invoker_up(
    cluster: Cluster, http: aiohttp.ClientSession
) -> None:
    await _until_state(http, cluster.invoker_ids[0], "up")
    assert {i: "up" for i in cluster.invoker_ids}.items() <= (await _states(http)).items()


async def test_sigkill_of_a_busy_invoker_loses_nothing(
    cluster: Cluster, http: aiohttp.ClientSession, store: Store
) -> None:
    name = f"short-{uuid.uuid4().hex[:6]}"
    await put_action(http, name, sleeper(0.2), timeout_ms=5000)
    victim = cluster.invoker_ids[0]
    # 120 calls of 0.2 s on 8 slots: ~3 s of work, most of it still to do at the kill.
    mixed = await start_mixed(http, cluster.auth, cluster.settings.amqp_url, name, 120)
    await wait_for_done(store, mixed.load, 8)  # both invokers busy before the kill
    proc = cluster.processes.procs[victim]
    os.kill(proc.pid, signal.SIGKILL)
    fault_at = time.monotonic()
    await mixed.at_fault(store, "invoker SIGKILL")
    await asyncio.to_thread(proc.wait)
    del cluster.processes.procs[victim]
    leftovers = _containers(victim)
    _, result, fed = await mixed.verdicts(store, fault_at, "invoker SIGKILL")
    assert result.lost == 0 and result.duplicated == 0 and fed.lost == 0
    assert result.accepted == 120
    await _serves(http, name)
    assert (await _states(http))[victim] == "down"
    # Restore: an invoker with the same id removes what its previous life left behind.
    assert leftovers, "the killed invoker left no containers: nothing to verify"
    cluster.processes.spawn(f"{victim}-restarted", "invoker", {"FT_INVOKER_ID": victim})
    await wait_ready(cluster.processes, cluster.settings, [victim])
    assert not leftovers & _containers(victim)
    await _until_state(http, victim, "up")


async def test_frozen_invoker_work_completes_elsewhere_or_fails_explicitly(
    cluster: Cluster, http: aiohttp.ClientSession, store: Store
) -> None:
    name = f"frozen-{uuid.uuid4().hex[:6]}"
    await put_action(http, name, sleeper(1.0), timeout_ms=3000)
    victim = cluster.invoker_ids[1]
    proc = cluster.processes.procs[victim]
    mixed = await start_mixed(http, cluster.auth, cluster.settings.amqp_url, name, 48)
    await wait_for_done(store, mixed.load, 4)  # containers busy on both invokers
    os.kill(proc.pid, signal.SIGSTOP)
    fault_at = time.monotonic()
    try:
        down_after = await _until_state(http, victim, "down")
        # Its activations stay without records until the deadline sweep answers them.
        await mixed.at_fault(store, "invoker SIGSTOP")
        load, result, fed = await mixed.verdicts(store, fault_at, "invoker SIGSTOP")
        print(f"[invoker SIGSTOP] down_after_s={down_after:.1f}")
        assert result.lost == 0 and result.duplicated == 0 and fed.lost == 0
        assert result.accepted == 48
        await _serves(http, name)
        errors = [r for r in [await store.get_record(i) for i in load.accepted]
                  if r is not None and not r.response.success]
        for record in errors:
            assert record.response.result == {"error": (
                f"The invoker {victim} did not complete the activation in time (unresponsive).")}
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    await _until_state(http, victim, "up", timeout=30)


async def test_sigkill_of_the_initializer_loses_nothing(
    cluster: Cluster, http: aiohttp.ClientSession, store: Store,
    initializers: ExtraInitializers,
) -> None:
    name = f"init-{uuid.uuid4().hex[:6]}"
    await put_action(http, name, sleeper(0.2), timeout_ms=5000)
    mixed = await start_mixed(http, cluster.auth, cluster.settings.amqp_url, name, 120)
    await wait_for_done(store, mixed.load, 8)
    victim = next(n for n, p in cluster.processes.procs.items()
                  if n.startswith("initializer") and p.poll() is None)
    proc = cluster.processes.procs[victim]
    os.kill(proc.pid, signal.SIGKILL)
    fault_at = time.monotonic()
    await mixed.at_fault(store, "initializer SIGKILL")
    await asyncio.to_thread(proc.wait)
    del cluster.processes.procs[victim]
    await initializers.start(keep=True)
    _, result, fed = await mixed.verdicts(store, fault_at, "initializer SIGKILL")
    assert result.lost == 0 and result.duplicated == 0 and fed.lost == 0
    assert result.accepted == 120
    await _serves(http, name)


async def test_sigterm_drains_an_invoker_and_its_successor_starts_clean(
    cluster: Cluster, http: aiohttp.ClientSession, store: Store
) -> None:
    name = f"term-{uuid.uuid4().hex[:6]}"
    await put_action(http, name, sleeper(1.0), timeout_ms=5000)
    victim = cluster.invoker_ids[0]
    key, proc = next((n, p) for n, p in cluster.processes.procs.items()
                     if n.startswith(victim) and p.poll() is None)
    mixed = await start_mixed(http, cluster.auth, cluster.settings.amqp_url, name, 32)
    await wait_for_done(store, mixed.load, 4)
    proc.send_signal(signal.SIGTERM)
    fault_at = time.monotonic()
    await mixed.at_fault(store, "invoker SIGTERM")
    await asyncio.to_thread(proc.wait, 40)
    del cluster.processes.procs[key]
    assert not _containers(victim), "a drained invoker removes its containers"
    _, result, fed = await mixed.verdicts(store, fault_at, "invoker SIGTERM")
    assert result.lost == 0 and result.duplicated == 0 and result.failed_explicit == 0
    assert fed.lost == 0
    cluster.processes.spawn(f"{victim}-after-term", "invoker", {"FT_INVOKER_ID": victim})
    await wait_ready(cluster.processes, cluster.settings, [victim])
    await _until_state(http, victim, "up")
