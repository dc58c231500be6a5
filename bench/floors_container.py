"""Container floors: what the Docker engine costs for exactly the container the invoker starts
(the platform's own DockerBackend, same image, same host config, its proxy directory on a
tmpfs), until the proxy answers /init and /run; docker pause/unpause; and HTTP round trips
over that container's proxy socket with three clients.

The backend runs under an invoker id of our own, so closing it removes only our containers.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import docker

from bench.env import bench_env, bench_python, bench_venv_ready
from bench.stats import ms_since, summary
from bench.unix_http import round_trips
from bus.config import Settings
from invoker.backends import ContainerHandle
from invoker.backends.docker import DockerBackend
from invoker.proxy_client import ProxyClient

INIT_BODY = json.dumps({"value": {"name": "floor", "main": "main", "binary": False,
                                  "code": "def main(args):\n    return {'ok': True}\n"}}).encode()
RUN_BODY = b'{"value":{}}'
MEMORY_MB = 256  # the stem cells' size, so a raw start compares with a cold one


class RawContainers:
    """Containers started by the platform's own backend, outside any invoker's pool, under an
    invoker id of our own (closing removes exactly those)."""

    def __init__(self) -> None:
        self.work_dir = Path(tempfile.mkdtemp(prefix="ft-bench-floor-"))
        self.settings = Settings(invoker_id=f"benchfloor-{uuid.uuid4().hex[:6]}",
                                 work_dir=self.work_dir)
        self.backend = DockerBackend(self.settings)
        self.started: list[ContainerHandle] = []

    async def __aenter__(self) -> RawContainers:
        await self.backend.remove_leftovers()  # creates the proxy-directory root
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.backend.close()  # removes every container under our invoker id
        await asyncio.to_thread(shutil.rmtree, self.work_dir, True)

    async def start_ready(self) -> dict[str, float]:
        """Create+start, then until the proxy accepts, then its first /init and /run."""
        started = time.perf_counter()
        handle = await self.backend.create(f"c{len(self.started)}", "python:3.11", MEMORY_MB)
        self.started.append(handle)
        create_start = ms_since(started)
        client = ProxyClient(self.socket(handle))
        await client.connect(timeout=30)
        connected = ms_since(started)
        try:
            for path, body in (("/init", INIT_BODY), ("/run", RUN_BODY)):
                status, answer = await client.post(path, body, timeout=10)
                if status != 200:
                    raise RuntimeError(f"proxy {path}: {status} {answer[:200]!r}")
        finally:
            client.close()
        return {"create_start_ms": create_start, "socket_ms": connected - create_start,
                "init_run_ms": ms_since(started) - connected, "ready_ms": ms_since(started)}

    async def destroy_all(self) -> None:
        for handle in self.started:
            await self.backend.destroy(handle)
        self.started.clear()

    @staticmethod
    def socket(handle: ContainerHandle) -> Path:
        return handle.io_dir / "proxy.sock"


def start_summary(samples: list[dict[str, float]]) -> dict[str, Any]:
    return {**summary([s["ready_ms"] for s in samples]),
            **{f"{part}_p50": summary([s[part] for s in samples])["p50_ms"]
               for part in ("create_start_ms", "socket_ms", "init_run_ms")}}


def _pause_unpause(engine: docker.APIClient, name: str, n: int) -> dict[str, Any]:
    pauses, unpauses = [], []
    for _ in range(n):
        started = time.perf_counter()
        engine.pause(name)
        pauses.append(ms_since(started))
        started = time.perf_counter()
        engine.unpause(name)
        unpauses.append(ms_since(started))
    return {"pause": summary(pauses), "unpause": summary(unpauses)}


async def _httpx_round_trips(socket: Path, n: int) -> dict[str, Any]:
    if not bench_venv_ready():
        return {"skipped": "httpx is not installed (no bench venv)"}
    done = await asyncio.to_thread(
        subprocess.run,
        [str(bench_python()), "-m", "bench.unix_http", "--socket", str(socket),
         "--client", "httpx", "--n", str(n)],
        env=bench_env(), capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        return {"error": done.stderr[-1000:]}
    return dict(json.loads(done.stdout))


async def container_floors(starts: int, round_trips_n: int, pauses: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with RawContainers() as raw:
        samples = [await raw.start_ready() for _ in range(starts)]
        results["docker create+start+proxy ready"] = start_summary(samples)
        last = raw.started[-1]
        for client in ("raw", "aiohttp"):
            results[f"unix socket HTTP: {client}"] = await round_trips(
                raw.socket(last), client, round_trips_n)
        results["unix socket HTTP: httpx"] = await _httpx_round_trips(raw.socket(last),
                                                                       round_trips_n)
        engine = docker.APIClient(base_url=raw.settings.docker_url)
        try:
            both = await asyncio.to_thread(_pause_unpause, engine, last.name, pauses)
        finally:
            engine.close()
        results["docker pause"] = both["pause"]
        results["docker unpause"] = both["unpause"]
    return results
