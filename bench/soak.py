"""Memory over time under steady load (not part of the default run: `--soak SECONDS`).

Eight callers invoke blocking, one after the other, while bursts of non-blocking invokes run
beside them (each burst waits for its records, so the load stays bounded); every interval the
RSS of each platform process and the memory of the containers is sampled. Flat means: the
median of the last third of the samples is within 10 % (or 5 MB) of the median of the first
third, for every process.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.cluster import BenchCluster, running_cluster
from bench.memory import snapshot
from bench.through_gateway import async_burst

STEM_CELLS = [{"kind": "python:3.11", "memory": 256, "count": 2}]
CALLERS = 8
WARM_UP_S = 20  # containers started and caches filled before the first sample
ALLOWED_GROWTH = (0.10, 5.0)  # fraction, MB: whichever is larger


async def _load(bc: BenchCluster, name: str, async_name: str, stop: asyncio.Event,
                counts: dict[str, int]) -> None:
    """Blocking callers on ``name``; bursts on ``async_name``, an action of their own, since a
    burst counts the records of its action to know when it is done."""
    async def caller() -> None:
        while not stop.is_set():
            try:
                await bc.invoke_blocking(name)
                counts["blocking"] += 1
            except Exception:
                counts["errors"] += 1
                # A call that fails without waiting (a closed session) must not spin: that
                # starves the loop, and with it the sampler and the cluster's shutdown.
                await asyncio.sleep(0.1)

    async def bursts() -> None:
        while not stop.is_set():
            done = await async_burst(bc, [async_name], 100, 16, 120)
            counts["async"] += done["invokes"] - done["errors"]
            counts["errors"] += done["errors"]

    await asyncio.gather(*(caller() for _ in range(CALLERS)), bursts())


def _growth(series: list[float]) -> dict[str, float]:
    third = max(1, len(series) // 3)
    first, last = statistics.median(series[:third]), statistics.median(series[-third:])
    return {"first_mb": first, "last_mb": last, "max_mb": max(series),
            "growth_mb": round(last - first, 1)}


def _is_flat(growth: dict[str, float]) -> bool:
    fraction, floor_mb = ALLOWED_GROWTH
    return growth["growth_mb"] <= max(growth["first_mb"] * fraction, floor_mb)


async def run_soak(duration_s: float, interval_s: float) -> dict[str, Any]:
    counts = {"blocking": 0, "async": 0, "errors": 0}
    samples: list[dict[str, Any]] = []
    async with running_cluster("ft-bench-soak", stem_cells=STEM_CELLS,
                               user_memory_mb=8192) as bc:
        name, async_name = "soak-blocking", "soak-async"
        await bc.create_action(name)
        await bc.create_action(async_name)
        stop = asyncio.Event()
        load = asyncio.create_task(_load(bc, name, async_name, stop, counts))
        try:
            await asyncio.sleep(WARM_UP_S)
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < duration_s:
                taken = await snapshot(bc)
                samples.append({"t_s": round(elapsed, 1), **taken})
                print(f".. soak {elapsed:5.0f} s: {taken['processes_mb']} containers "
                      f"{taken['containers'].get('p50_mb')} MB", flush=True)
                await asyncio.sleep(interval_s)
        finally:
            # Stopped before the cluster goes, also when sampling failed.
            stop.set()
            await load
    roles = list(samples[0]["processes_mb"]) if samples else []
    growth = {role: _growth([s["processes_mb"][role] for s in samples]) for role in roles}
    containers = [s["containers"]["p50_mb"] for s in samples if s["containers"].get("count")]
    if containers:
        growth["container p50"] = _growth(containers)
    flat = bool(samples) and all(_is_flat(growth[role]) for role in roles)
    summary = "; ".join(f"{role} {g['first_mb']:.0f}->{g['last_mb']:.0f} MB"
                        for role, g in growth.items())
    return {"duration_s": duration_s, "interval_s": interval_s, "calls": counts,
            "samples": samples, "growth": growth, "flat": flat,
            "summary": f"{'flat' if flat else 'NOT flat'}: {summary} ({counts['blocking']} "
                       f"blocking + {counts['async']} async calls, {counts['errors']} errors)"}
