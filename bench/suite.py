"""The whole benchmark in one go on the same services: floors, Celery, then the platform on a
cluster whose pool has room for everything, then on one with no stem cells and little room."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import traceback
from collections.abc import Awaitable
from typing import Any

from bench import floors, through_gateway
from bench.cluster import BenchCluster, Services, claimed_services, running_cluster
from bench.env import bench_env, bench_python, bench_venv_ready, ensure_bwrap
from bench.floors_container import RawContainers, container_floors, start_summary
from bench.memory import PeakSampler, snapshot
from bench.sizes import Sizes

STEM_CELLS = [{"kind": "python:3.11", "memory": 256, "count": 2}]
SECTIONS = ("floors", "celery", "platform", "memory")


class Suite:
    def __init__(self, sizes: Sizes, celery: bool) -> None:
        self.sizes = sizes
        self.celery = celery
        self.results: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        self.failures: list[str] = []
        self.started = time.monotonic()

    async def measure(self, section: str, name: str, work: Awaitable[Any]) -> Any:
        """Run one measurement; a failure is recorded (and reported) but does not stop the
        others: one broken hop should not hide every other figure."""
        print(f".. {time.monotonic() - self.started:6.1f} s  {section}: {name}", flush=True)
        try:
            found = await work
        except Exception as exc:
            traceback.print_exc()
            self.failures.append(f"{section}: {name}: {exc!r}")
            found = {"error": repr(exc)[:500]}
        self.results[section][name] = found
        return found

    async def run(self) -> dict[str, dict[str, Any]]:
        await self.floors()
        await self.celery_peer()
        await self.cluster_with_room()
        await self.cluster_without_room()
        return self.results

    async def floors(self) -> None:
        s = self.sizes
        with claimed_services("ft-bench-floors") as services:
            await self.measure("floors", "aio-pika request/reply",
                               floors.amqp_round_trip(services.amqp_url, s.floor_round_trips))
            await self.measure("floors", "Redis GET",
                               floors.redis_get(services.redis_url, s.floor_round_trips))
        await self.measure("floors", "aiohttp server", floors.aiohttp_server(
            s.floor_round_trips, s.server_requests_per_conn))
        bwrap = ensure_bwrap(lambda m: print(f".. {m}"))
        await self.measure("floors", "bubblewrap spawn until answer",
                           asyncio.to_thread(floors.bubblewrap_spawn, bwrap, s.sandboxes))
        found = await self.measure("floors", "containers", container_floors(
            s.container_starts, s.floor_round_trips, s.pauses))
        del self.results["floors"]["containers"]
        if "error" in found:  # the table shows the error on the first container row
            found = {"docker create+start+proxy ready": found}
        self.results["floors"].update(found)

    async def celery_peer(self) -> None:
        if not self.celery or not bench_venv_ready():
            self.results["celery"] = {"skipped": "no bench venv (run without --smoke once)"}
            return
        with claimed_services("ft-bench-celery") as services:
            found = await self.measure("celery", "peer", self._celery_child(services))
        self.results["celery"] = found

    async def _celery_child(self, services: Services) -> dict[str, Any]:
        s = self.sizes
        done = await asyncio.to_thread(
            subprocess.run,
            [str(bench_python()), "-m", "bench.celery_peer", "--broker", services.amqp_url,
             "--backend", services.redis_url, "--latency-n", str(s.celery_latency),
             "--tasks", str(s.celery_tasks), "--timeout-s", str(s.timeout_s)],
            env=bench_env(), capture_output=True, text=True, timeout=s.timeout_s + 300)
        if done.returncode != 0:
            raise RuntimeError(f"celery peer failed: {done.stderr[-2000:]}")
        return dict(json.loads(done.stdout))

    async def cluster_with_room(self) -> None:
        s, measure = self.sizes, self.measure
        async with running_cluster("ft-bench-room", stem_cells=STEM_CELLS,
                                   user_memory_mb=s.room_memory_mb) as bc:
            await measure("memory", "idle", snapshot(bc))
            await measure("platform", "warm blocking, sequential",
                          through_gateway.warm_sequential(bc, s.sequential))
            # While the pool is still small: each first invoke then measures taking a stem
            # cell, not also the invoker's bookkeeping of a hundred warm containers.
            await measure("platform", "stem-cell start", through_gateway.first_invokes(
                bc, s.first_invokes, 256, stem_cells=sum(int(c["count"]) for c in STEM_CELLS)))
            await measure("platform", "warm blocking, concurrent",
                          through_gateway.warm_concurrent(bc, s.concurrent, s.callers))
            sampler = PeakSampler(bc)
            sampler.start()
            try:
                await measure("platform", "async throughput", through_gateway.async_throughput(
                    bc, s.async_invokes, s.in_flight, s.timeout_s))
            finally:
                self.results["memory"]["under load"] = await sampler.stop()
            await measure("memory", "idle after load", snapshot(bc))
            await self._many(bc, "room", s.many_invokes)

    async def cluster_without_room(self) -> None:
        s = self.sizes
        async with running_cluster("ft-bench-tight", stem_cells=[],
                                   user_memory_mb=s.no_room_memory_mb) as bc:
            await self.measure("platform", "cold start", self._cold_beside_raw(bc))
            await self._many(bc, "no room", s.no_room_invokes)

    async def _cold_beside_raw(self, bc: BenchCluster) -> dict[str, Any]:
        """Cold starts (the cluster has no stem cells) taken in turns with raw starts of the
        same container, so both see the same load on a shared machine: the difference is
        what the platform adds."""
        raw_samples, cold = [], []
        async with RawContainers() as raw:
            for _ in range(self.sizes.first_invokes):
                raw_samples.append(await raw.start_ready())
                await raw.destroy_all()
                cold.append(await through_gateway.first_invoke(bc, 256))
        return {**through_gateway.first_summary(cold),
                "raw beside": start_summary(raw_samples)}

    async def _many(self, bc: BenchCluster, room: str, invokes: int) -> None:
        s = self.sizes
        group: dict[str, Any] = {}
        self.results["platform"][f"many actions, {room}"] = group
        for key, actions in (("1 action", 1), ("many actions", s.many_actions)):
            group[key] = await self.measure(
                "platform", f"many actions, {room}: {actions}",
                through_gateway.many_actions(bc, actions, invokes, s.in_flight, s.timeout_s,
                                             room=room == "room"))
            del self.results["platform"][f"many actions, {room}: {actions}"]
