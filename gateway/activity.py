"""The last minutes of each namespace's activations, second by second, for the dashboard's
charts: how many ended, how many failed, how many were cold starts, and their latencies
(waitTime + duration) in log-spaced buckets, from which p50 and p99 are read.

Pure bookkeeping over ``ActivationSample``s and a clock; no I/O."""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field

from bus.models import ActivationSample, StatusCode

WINDOW_S = 300
# Latency bucket bounds in ms: 1, 1.25, 1.6, 2, ... (eight per decade), up to ~20 minutes.
LATENCY_BOUNDS_MS = [10 ** (i / 8) for i in range(0, 50)]


@dataclass
class Second:
    at: int  # epoch second
    count: int = 0
    errors: int = 0
    cold: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    def add(self, sample: ActivationSample) -> None:
        self.count += 1
        if sample.status != StatusCode.SUCCESS:
            self.errors += 1
        if sample.init_ms is not None:
            self.cold += 1
        latency = sample.wait_ms + sample.duration_ms
        self.latency[bisect.bisect_left(LATENCY_BOUNDS_MS, latency)] += 1


def percentile(buckets: list[int], q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the q-quantile; None if empty."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = math.ceil(q * total)
    seen = 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= rank:
            return LATENCY_BOUNDS_MS[min(i, len(LATENCY_BOUNDS_MS) - 1)]
    return LATENCY_BOUNDS_MS[-1]


class Activity:
    """Per namespace, one ``Second`` per second of the last ``WINDOW_S`` that saw activations."""

    def __init__(self, window_s: int = WINDOW_S) -> None:
        self.window_s = window_s
        self._seconds: dict[str, deque[Second]] = {}

    def add(self, sample: ActivationSample) -> None:
        at = sample.end // 1000
        seconds = self._seconds.setdefault(sample.namespace, deque())
        if seconds and seconds[-1].at == at:
            seconds[-1].add(sample)
            return
        if seconds and seconds[-1].at > at:  # late (another invoker's turn): find its second
            for second in reversed(seconds):
                if second.at == at:
                    second.add(sample)
                    return
                if second.at < at:
                    break
            if at <= seconds[-1].at - self.window_s:
                return
            # Rare and harmless to keep out of order: series() buckets by time, not position.
        second = Second(at)
        second.add(sample)
        seconds.append(second)
        while seconds and seconds[0].at <= at - self.window_s:
            seconds.popleft()

    def namespaces(self) -> list[str]:
        return sorted(self._seconds)

    def series(
        self, namespaces: list[str] | None, now_s: int, step_s: int = 5
    ) -> dict[str, object]:
        """The window as ``WINDOW_S / step_s`` points, oldest first, over the given namespaces
        (None: all of them): activations/s, errors/s, cold starts, p50/p99 latency (ms)."""
        points = self.window_s // step_s
        first = now_s - points * step_s + 1
        merged = [Second(first + i * step_s) for i in range(points)]
        chosen = self._seconds if namespaces is None else {
            ns: self._seconds[ns] for ns in namespaces if ns in self._seconds}
        for seconds in chosen.values():
            for second in seconds:
                slot = (second.at - first) // step_s
                if 0 <= slot < points:
                    into = merged[slot]
                    into.count += second.count
                    into.errors += second.errors
                    into.cold += second.cold
                    into.latency = [a + b for a, b in zip(into.latency, second.latency,
                                                           strict=True)]
        return {
            "step_s": step_s,
            "t": [s.at for s in merged],
            "activations_per_s": [s.count / step_s for s in merged],
            "errors_per_s": [s.errors / step_s for s in merged],
            "cold_starts": [s.cold for s in merged],
            "p50_ms": [percentile(s.latency, 0.5) for s in merged],
            "p99_ms": [percentile(s.latency, 0.99) for s in merged],
            "totals": {
                "activations": sum(s.count for s in merged),
                "errors": sum(s.errors for s in merged),
                "cold_starts": sum(s.cold for s in merged),
            },
        }
