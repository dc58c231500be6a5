"""The whole benchmark in one go on the same services: floors, then the platform on a cluster
whose pool has room for everything, with Celery's workers and the same cluster on the sandbox
backend up beside it, measured in turns with both; then the platform on one with no stem
cells and little room, and the same on the sandbox backend, beside the raw bubblewrap floor."""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from bench import floors, through_gateway
from bench.celery_driver import CeleryPeer, celery_peer
from bench.cluster import BenchCluster, claimed_services, running_cluster
from bench.env import bench_venv_ready, ensure_bwrap
from bench.floors_container import RawContainers, container_floors, start_summary
from bench.memory import PeakSampler, snapshot
from bench.sizes import Sizes
from bench.stats import summary, turns_together
from cli.progress import Progress

STEM_CELLS = [{"kind": "python:3.11", "memory": 256, "count": 2}]
SECTIONS = ("floors", "celery", "platform", "sandbox", "memory")


class Suite:
    def __init__(self, sizes: Sizes, celery: bool, progress: Progress | None = None) -> None:
        self.sizes = sizes
        self.celery = celery
        self.progress = progress or Progress()
        self.results: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        self.failures: list[str] = []
        self.started = time.monotonic()

    async def measure(self, section: str, name: str, work: Awaitable[Any]) -> Any:
        """Run one measurement; a failure is recorded (and reported) but does not stop the
        others: one broken hop should not hide every other figure."""
        self.progress.line(f".. {time.monotonic() - self.started:6.1f} s  {section}: {name}")
        self.progress.update("benchmark sections", SECTIONS.index(section), len(SECTIONS))
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
        async with self._celery() as celery:
            await self.cluster_with_room(celery)
        await self.metrics_cost()
        await self.cluster_without_room()
        await self.sandbox_clusters()
        self.progress.update("benchmark sections", len(SECTIONS), len(SECTIONS))
        self.progress.close()
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

    @asynccontextmanager
    async def _celery(self) -> AsyncIterator[CeleryPeer | None]:
        """Celery's workers, up beside the platform for its turns; None without them."""
        if not self.celery or not bench_venv_ready():
            self.results["celery"] = {"skipped": "no bench venv (run without --smoke once)"}
            yield None
            return
        async with AsyncExitStack() as stack:
            services = stack.enter_context(claimed_services("ft-bench-celery"))
            peer = await self.measure("celery", "workers", stack.enter_async_context(
                celery_peer(services, self.sizes.timeout_s)))
            if isinstance(peer, CeleryPeer):
                del self.results["celery"]["workers"]  # the error stays in the report
                yield peer
            else:
                yield None

    async def cluster_with_room(self, celery: CeleryPeer | None) -> None:
        s, measure = self.sizes, self.measure
        stem_cells = sum(int(c["count"]) for c in STEM_CELLS)
        async with running_cluster("ft-bench-room", stem_cells=STEM_CELLS,
                                   user_memory_mb=s.room_memory_mb) as bc:
            await measure("memory", "idle", snapshot(bc))
            # The same cluster on the sandbox backend beside it, for the latencies: both
            # backends are measured in turns, in the same minutes.
            async with running_cluster("ft-bench-sbx-room", stem_cells=STEM_CELLS,
                                       user_memory_mb=s.room_memory_mb,
                                       backend="sandbox") as sandbox:
                await measure("platform", "warm blocking, sequential",
                              self._latency_in_turns(bc, celery, sandbox))
                # While the pools are still small: each first invoke then measures taking a
                # stem cell, not also the invoker's bookkeeping of a hundred warm containers.
                for section, cluster in (("platform", bc), ("sandbox", sandbox)):
                    await measure(section, "stem-cell start", through_gateway.first_invokes(
                        cluster, s.first_invokes, 256, stem_cells=stem_cells))
            await measure("platform", "warm blocking, concurrent",
                          through_gateway.warm_concurrent(bc, s.concurrent, s.callers))
            sampler = PeakSampler(bc)
            sampler.start()
            try:
                await measure("platform", "async throughput",
                              self._throughput_in_turns(bc, celery))
            finally:
                self.results["memory"]["under load"] = await sampler.stop()
            await measure("memory", "idle after load", snapshot(bc))
            await self._many(bc, "room", s.many_invokes)

    async def _latency_in_turns(
        self, bc: BenchCluster, celery: CeleryPeer | None, sandbox: BenchCluster,
    ) -> dict[str, Any]:
        """Warm blocking calls on both backends and Celery's delay().get() in turns, so a
        machine whose speed drifts during the run slows them all alike."""
        s = self.sizes
        ours = await through_gateway.Sequential.on_a_warm_action(bc)
        in_sandbox = await through_gateway.Sequential.on_a_warm_action(sandbox)
        theirs: list[float] = []
        for _ in range(s.latency_turns):
            if celery is not None:
                theirs += await celery.latency(max(1, s.celery_latency // s.latency_turns))
            await ours.calls(max(1, s.sequential // s.latency_turns))
            await in_sandbox.calls(max(1, s.sequential // s.latency_turns))
        if celery is not None:
            self.results["celery"]["delay().get() -P solo"] = {
                **summary(theirs), "turns": s.latency_turns}
        self.results["sandbox"]["warm blocking, sequential"] = {
            **in_sandbox.summary(), "turns": s.latency_turns}
        return {**ours.summary(), "turns": s.latency_turns}

    async def _throughput_in_turns(
        self, bc: BenchCluster, celery: CeleryPeer | None
    ) -> dict[str, Any]:
        """Non-blocking invokes until their records exist, and Celery's live tasks, in turns."""
        s = self.sizes
        per_turn = max(1, s.async_invokes // s.throughput_turns)
        name = await through_gateway.async_action(bc, per_turn, s.in_flight, s.timeout_s)
        ours, theirs = [], []
        for _ in range(s.throughput_turns):
            if celery is not None:
                theirs.append(await celery.live(max(1, s.celery_tasks // s.throughput_turns)))
            ours.append(await through_gateway.async_burst(
                bc, [name], per_turn, s.in_flight, s.timeout_s))
        if theirs:
            self.results["celery"]["live no-op tasks -P prefork -c 2"] = turns_together(
                theirs, ("tasks", "enqueue_s", "errors"), done="done")
        return through_gateway.bursts_together(ours)

    async def metrics_cost(self) -> None:
        """What counting every activation costs (samples to the gateways, prometheus_client):
        async throughput on twin fresh clusters, one with FT_METRICS_ENABLED=false, in turns
        (twins, so neither carries the other's history of containers and actions)."""
        s = self.sizes
        async with running_cluster("ft-bench-metrics-on", stem_cells=STEM_CELLS,
                                   user_memory_mb=s.room_memory_mb) as on, \
                running_cluster("ft-bench-metrics-off", stem_cells=STEM_CELLS,
                                user_memory_mb=s.room_memory_mb,
                                extra_env={"FT_METRICS_ENABLED": "false"}) as off:
            await self.measure("platform", "metrics cost", self._on_and_off(on, off))

    async def _on_and_off(self, on: BenchCluster, off: BenchCluster) -> dict[str, Any]:
        s = self.sizes
        per_turn = s.metrics_invokes
        clusters = {"on": on, "off": off}
        names = {label: await through_gateway.async_action(bc, per_turn, s.in_flight,
                                                          s.timeout_s)
                 for label, bc in clusters.items()}
        bursts: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
        for turn in range(s.metrics_turns):
            # Alternate who goes first: a machine that speeds up or slows down within a turn
            # favours neither.
            for label in ("on", "off") if turn % 2 == 0 else ("off", "on"):
                bursts[label].append(await through_gateway.async_burst(
                    clusters[label], [names[label]], per_turn, s.in_flight, s.timeout_s))
        return {label: through_gateway.bursts_together(found)
                for label, found in bursts.items()}

    async def cluster_without_room(self) -> None:
        s = self.sizes
        async with running_cluster("ft-bench-tight", stem_cells=[],
                                   user_memory_mb=s.no_room_memory_mb) as bc:
            await self.measure("platform", "cold start", self._cold_beside_raw(bc))
            await self._many(bc, "no room", s.no_room_invokes)

    async def sandbox_clusters(self) -> None:
        """The sandbox backend without room, in the same run (its warm latency and stem-cell
        start are taken beside the Docker cluster with room)."""
        s, measure = self.sizes, self.measure
        async with running_cluster("ft-bench-sbx-tight", stem_cells=[], backend="sandbox",
                                   user_memory_mb=s.no_room_memory_mb) as bc:
            await measure("sandbox", "cold start", self._cold_beside_bwrap(bc))
            await self._many(bc, "no room", s.no_room_invokes, section="sandbox")

    async def _cold_beside_bwrap(self, bc: BenchCluster) -> dict[str, Any]:
        """Sandbox cold starts in turns with the raw bubblewrap floor (spawn until a socket
        answers), as the Docker cold starts are taken beside raw containers."""
        bwrap = ensure_bwrap(lambda m: print(f".. {m}"))
        raw_samples, cold = [], []
        for _ in range(self.sizes.first_invokes):
            if bwrap is not None:
                raw = await asyncio.to_thread(floors.bubblewrap_spawn, bwrap, 1)
                raw_samples.append(raw["p50_ms"])
            cold.append(await through_gateway.first_invoke(bc, 256))
        return {**through_gateway.first_summary(cold),
                "raw beside": summary(raw_samples) if raw_samples else {}}

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

    async def _many(self, bc: BenchCluster, room: str, invokes: int,
                    section: str = "platform") -> None:
        s = self.sizes
        group: dict[str, Any] = {}
        self.results[section][f"many actions, {room}"] = group
        for key, actions in (("1 action", 1), ("many actions", s.many_actions)):
            group[key] = await self.measure(
                section, f"many actions, {room}: {actions}",
                through_gateway.many_actions(bc, actions, invokes, s.in_flight, s.timeout_s))
            del self.results[section][f"many actions, {room}: {actions}"]
