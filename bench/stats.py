"""Summaries of latency samples and a clock in milliseconds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable


def percentile(samples: list[float], p: float) -> float:
    """Nearest-rank percentile of ``samples`` (p in 0-100)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(samples_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(samples_ms),
        "p50_ms": round(statistics.median(samples_ms), 3),
        "p99_ms": round(percentile(samples_ms, 99), 3),
        "mean_ms": round(statistics.fmean(samples_ms), 3),
    }


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


async def timed_loop(call: Callable[[], Awaitable[object]], n: int,
                     warm_up: int = 0) -> list[float]:
    """Milliseconds of ``n`` sequential awaits of ``call()``, after ``warm_up`` unmeasured ones
    (first connections and caches are not what a floor is about)."""
    for _ in range(warm_up):
        await call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append(ms_since(start))
    return samples
