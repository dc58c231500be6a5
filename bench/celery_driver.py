"""The bench's end of ``bench.celery_peer``: Celery's workers stay up beside the platform, and
each command takes one turn of a measurement, so Celery and the platform are measured in
alternation over the same minutes of a machine whose speed drifts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bench.cluster import Services
from bench.env import bench_env, bench_python

START_TIMEOUT_S = 180


class CeleryPeer:
    def __init__(self, process: asyncio.subprocess.Process, timeout_s: float) -> None:
        self._process = process
        self._timeout_s = timeout_s

    async def latency(self, n: int) -> list[float]:
        """``n`` delay().get() round trips, ms each."""
        return list((await self._command(f"latency {n}"))["samples"])

    async def live(self, tasks: int) -> dict[str, Any]:
        """``tasks`` no-op tasks enqueued live, until their results are in."""
        return await self._command(f"live {tasks}")

    async def _command(self, line: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(f"{line}\n".encode())
        await self._process.stdin.drain()
        return await self._answer(self._timeout_s)

    async def _answer(self, timeout_s: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), timeout_s)
        if not line:
            raise RuntimeError(f"celery peer exited ({await self._process.wait()})")
        return dict(json.loads(line))


@asynccontextmanager
async def celery_peer(services: Services, timeout_s: float) -> AsyncIterator[CeleryPeer]:
    """The peer with both workers up; stopped (its workers with it) on the way out."""
    process = await asyncio.create_subprocess_exec(
        str(bench_python()), "-m", "bench.celery_peer", "--broker", services.amqp_url,
        "--backend", services.redis_url, "--timeout-s", str(timeout_s),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=bench_env())
    peer = CeleryPeer(process, timeout_s)
    try:
        await peer._answer(START_TIMEOUT_S)  # ready
        yield peer
    finally:
        if process.returncode is None:
            assert process.stdin is not None
            process.stdin.close()  # the peer stops its workers and exits
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                await process.wait()
