"""Summaries of latency samples and of rates measured in turns, and a clock in milliseconds."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any


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


def turns_together(turns: list[dict[str, Any]], counts: Iterable[str], done: str,
                   elapsed: str = "elapsed_s") -> dict[str, Any]:
    """A rate measured in turns with other work, as one: ``counts`` (``elapsed`` among them)
    summed over the turns, and ``per_s``, the summed ``done`` over the summed time."""
    total: dict[str, Any] = {"turns": len(turns)}
    for key in {*counts, done, elapsed}:
        total[key] = round(sum(t[key] for t in turns), 3)
    total["per_s"] = round(total[done] / max(0.001, total[elapsed]), 1)
    return total


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
