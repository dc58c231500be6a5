"""Memory of a running cluster: resident set of each platform process (/proc), and of each of
the invoker's containers as the kernel's memory cgroup counts it (usage less inactive file
cache, which is what `docker stats` shows), read straight from the cgroup files: no Docker API
call per sample, so sampling does not load the engine it measures."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path
from typing import Any

import docker

from bench.cluster import BenchCluster
from invoker.backends.docker import LABEL

MB = 1024 * 1024
CGROUP = Path("/sys/fs/cgroup")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def _cgroup_dir(engine_id: str) -> Path | None:
    for candidate in (CGROUP / "memory" / "docker" / engine_id,  # v1, cgroupfs driver
                      CGROUP / "memory" / "system.slice" / f"docker-{engine_id}.scope",
                      CGROUP / "system.slice" / f"docker-{engine_id}.scope",  # v2, systemd
                      CGROUP / "docker" / engine_id):  # v2, cgroupfs
        if candidate.is_dir():
            return candidate
    return None


def container_mb(engine_id: str) -> float | None:
    """None if it has no cgroup (any more: the invoker may remove it while we read)."""
    where = _cgroup_dir(engine_id)
    if where is None:
        return None
    try:
        stat = dict(line.split() for line in (where / "memory.stat").read_text().splitlines())
        if (where / "memory.current").exists():  # cgroup v2
            used = int((where / "memory.current").read_text())
            inactive = int(stat.get("inactive_file", 0))
        else:
            used = int((where / "memory.usage_in_bytes").read_text())
            inactive = int(stat.get("total_inactive_file", 0))
    except OSError:
        return None
    return round((used - inactive) / MB, 1)


def _container_ids(invoker_id: str) -> list[str]:
    engine = docker.APIClient()
    try:
        found = engine.containers(filters={"label": f"{LABEL}={invoker_id}",
                                           "status": "running"})
        return [c["Id"] for c in found]
    finally:
        engine.close()


async def snapshot(bc: BenchCluster) -> dict[str, Any]:
    ids = await asyncio.to_thread(_container_ids, bc.invoker_id)
    sizes = [mb for mb in map(container_mb, ids) if mb is not None]
    return {"processes_mb": {role: rss_mb(pid) for role, pid in bc.pids().items()},
            "containers": _container_summary(sizes)}


def _container_summary(sizes: list[float]) -> dict[str, Any]:
    if not sizes:
        return {"count": 0}
    return {"count": len(sizes), "p50_mb": round(statistics.median(sizes), 1),
            "max_mb": max(sizes), "total_mb": round(sum(sizes), 1)}


class PeakSampler:
    """Samples process RSS every ``interval`` s in the background; keeps the peak per process
    and the container figures at the sample with the most containers."""

    def __init__(self, bc: BenchCluster, interval: float = 0.5) -> None:
        self.bc, self.interval = bc, interval
        self.peak: dict[str, float] = {}
        self.containers: dict[str, Any] = {"count": 0}
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            taken = await snapshot(self.bc)
            for role, mb in taken["processes_mb"].items():
                self.peak[role] = max(self.peak.get(role, 0.0), mb)
            if taken["containers"]["count"] >= self.containers["count"]:
                self.containers = taken["containers"]
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> dict[str, Any]:
        assert self._task is not None
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        return {"processes_mb": self.peak, "containers": self.containers}
