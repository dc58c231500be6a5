"""Measurements through the platform's front door (HTTP → gateway → bus → invoker → container):
warm blocking latency, async throughput until every record exists, first invokes that land on
a stem cell or start cold, and many distinct actions against one."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench.cluster import NS, BenchCluster
from bench.stats import ms_since, summary, turns_together


def _tag() -> str:
    return uuid.uuid4().hex[:6]


def _annotation(body: dict[str, Any], key: str) -> Any:
    return next((a["value"] for a in body.get("annotations", []) if a["key"] == key), None)


@dataclass
class Sequential:
    """Calls of one caller, one after the other: the latency of each, and where it went, from
    each record (whole ms, so means): ``in`` from sending the request until the gateway's
    publish is confirmed (HTTP, auth, lookup, publish), ``wait`` from then until the invoker
    starts it (two bus hops and placement), ``run`` the invoker's start to end (the container's
    /run), ``out`` from then until the response is read (record write, the reply hop, HTTP).
    One clock: same host."""

    bc: BenchCluster
    name: str
    wall: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(
        default_factory=lambda: {"in": [], "wait": [], "run": [], "out": []})

    @classmethod
    async def on_a_warm_action(cls, bc: BenchCluster) -> Sequential:
        name = f"warm-{_tag()}"
        await bc.create_action(name)
        for _ in range(20):
            await bc.invoke_blocking(name)
        return cls(bc, name)

    async def calls(self, n: int) -> None:
        for _ in range(n):
            sent_ms, started = time.time() * 1000, time.perf_counter()
            body = await self.bc.invoke_blocking(self.name)
            self.wall.append(ms_since(started))
            read_ms = time.time() * 1000
            wait = float(_annotation(body, "waitTime") or 0)
            self.parts["in"].append(body["start"] - wait - sent_ms)
            self.parts["wait"].append(wait)
            self.parts["run"].append(float(body["end"] - body["start"]))
            self.parts["out"].append(read_ms - body["end"])

    def summary(self) -> dict[str, Any]:
        return {**summary(self.wall), **{f"{part}_mean_ms": summary(values)["mean_ms"]
                                         for part, values in self.parts.items()}}


async def warm_sequential(bc: BenchCluster, n: int) -> dict[str, Any]:
    caller = await Sequential.on_a_warm_action(bc)
    await caller.calls(n)
    return caller.summary()


async def warm_concurrent(bc: BenchCluster, total: int, workers: int) -> dict[str, Any]:
    """``workers`` callers each invoking one after the other; latency per call and calls/s."""
    name = f"conc-{_tag()}"
    await bc.create_action(name)
    for _ in range(3):  # as many warm containers as callers before measuring
        await asyncio.gather(*(bc.invoke_blocking(name) for _ in range(workers)))
    samples: list[float] = []
    remaining = total

    async def caller() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await bc.invoke_blocking(name)
            samples.append(ms_since(started))

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(workers)))
    elapsed = time.perf_counter() - started
    return {**summary(samples), "per_s": round(len(samples) / elapsed, 1)}


STALL_S = 60  # no new record for this long: the platform stopped making progress
RECORD_POLL_S = 0.1


async def _records_in(bc: BenchCluster, names: list[str], expected: int, since_ms: int,
                      timeout_s: float) -> int:
    """Poll the per-action record indexes (ZCOUNTs, one round trip for all) until
    ``expected`` records exist, the time is up, or no record came for STALL_S (a stuck
    platform is reported as missing records, not waited for to the end). The burst is timed
    by its records' end times, not by this poll, so it polls seldom: with a hundred actions a
    poll every 20 ms took a third of a core from the platform it measured."""
    deadline = time.monotonic() + timeout_s
    last, last_change = -1, time.monotonic()
    while True:
        found = await bc.store.count_records_of(NS, names, since_ms)
        now = time.monotonic()
        if found != last:
            last, last_change = found, now
        if found >= expected or now > deadline or now - last_change > STALL_S:
            return found
        await asyncio.sleep(RECORD_POLL_S)


async def async_burst(bc: BenchCluster, names: list[str], n: int, in_flight: int,
                      timeout_s: float) -> dict[str, Any]:
    """``n`` non-blocking invokes spread round-robin over ``names``, ``in_flight`` requests at
    a time, timed from the first request until the last record is written (its end time)."""
    since_ms = int(time.time() * 1000)
    started = time.perf_counter()
    refused = 0
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        nonlocal refused
        async with gate:
            if await bc.invoke_async(names[i % len(names)]) is None:
                refused += 1

    await asyncio.gather(*(one(i) for i in range(n)))
    accepted_s = time.perf_counter() - started
    found = await _records_in(bc, names, n - refused, since_ms, timeout_s)
    records = []
    for name in names:
        records += await bc.store.list_records(NS, name=name, since=since_ms, limit=n)
    last_end = max((r.end for r in records), default=int(time.time() * 1000))
    elapsed_s = max(0.001, (last_end - since_ms) / 1000)
    failed = sum(1 for r in records if not r.response.success)
    reasons: dict[str, int] = {}  # what the failed records say, so errors can be told apart
    for r in records:
        if not r.response.success:
            result = r.response.result
            reason = str(result.get("error", result) if isinstance(result, dict) else result)
            reason = reason[:120]
            reasons[reason] = reasons.get(reason, 0) + 1
    starts: dict[str, int] = {}
    for r in records:
        starts[r.container_start or "?"] = starts.get(r.container_start or "?", 0) + 1
    missing = max(0, n - refused - found)
    return {"invokes": n, "actions": len(names), "in_flight": in_flight,
            "accept_s": round(accepted_s, 3), "elapsed_s": round(elapsed_s, 3),
            "succeeded": found - failed, "per_s": round((found - failed) / elapsed_s, 1),
            "errors": refused + failed + missing,
            "refused": refused, "failed": failed, "missing": missing,
            "starts": starts, "error_reasons": reasons}


async def async_action(bc: BenchCluster, n: int, in_flight: int, timeout_s: float) -> str:
    """A no-op action, warmed by a burst of the shape of ``n`` invokes first."""
    name = f"async-{_tag()}"
    await bc.create_action(name)
    await async_burst(bc, [name], max(4 * in_flight, n // 10), in_flight, timeout_s)
    return name


def bursts_together(bursts: list[dict[str, Any]]) -> dict[str, Any]:
    """Bursts taken in turns with other work, as one: their succeeded invokes over their time."""
    total = turns_together(bursts, ("invokes", "accept_s", "errors", "refused", "failed",
                                    "missing"), done="succeeded")
    for key in ("starts", "error_reasons"):
        merged: dict[str, int] = {}
        for burst in bursts:
            for what, count in burst[key].items():
                merged[what] = merged.get(what, 0) + count
        total[key] = merged
    total["actions"], total["in_flight"] = bursts[0]["actions"], bursts[0]["in_flight"]
    return total


async def many_actions(bc: BenchCluster, actions: int, n: int, in_flight: int,
                       timeout_s: float, memory: int = 128) -> dict[str, Any]:
    """Throughput over ``actions`` distinct actions; each is invoked once first (its cold
    start, timed as the warm-up), so with room in the pool the burst finds them warm."""
    tag = _tag()
    names = [f"many{actions}-{tag}-{i}" for i in range(actions)]
    for name in names:
        await bc.create_action(name, memory=memory)
    started = time.perf_counter()
    warm_up = await async_burst(bc, names, max(actions, 2 * in_flight), in_flight, timeout_s)
    warm_up_s = time.perf_counter() - started
    burst = await async_burst(bc, names, n, in_flight, timeout_s)
    return {**burst, "warm_up_s": round(warm_up_s, 1), "warm_up_errors": warm_up["errors"]}


async def first_invoke(bc: BenchCluster, memory: int) -> tuple[float, float, str]:
    """Blocking invoke of a fresh action: (wall ms, initTime ms, the start its record names)."""
    name = f"first-{_tag()}"
    await bc.create_action(name, memory=memory)
    started = time.perf_counter()
    body = await bc.invoke_blocking(name)
    wall = ms_since(started)
    record = await bc.store.get_record(body["activationId"])
    kind = (record.container_start if record else None) or "?"
    return wall, float(_annotation(body, "initTime") or 0), kind


def first_summary(samples: list[tuple[float, float, str]]) -> dict[str, Any]:
    starts: dict[str, int] = {}
    for _, _, kind in samples:
        starts[kind] = starts.get(kind, 0) + 1
    return {**summary([wall for wall, _, _ in samples]),
            "init_p50_ms": summary([init for _, init, _ in samples])["p50_ms"],
            "starts": starts}


async def first_invokes(bc: BenchCluster, n: int, memory: int,
                        stem_cells: int) -> dict[str, Any]:
    """First invokes of ``n`` fresh actions, one at a time. Before each the invoker gets its
    ``stem_cells`` back, so each lands on one (with none configured, each starts cold).
    The records say which start each got."""
    samples = []
    for _ in range(n):
        if stem_cells:
            await bc.wait_for_stem_cells(stem_cells)
        samples.append(await first_invoke(bc, memory))
    return first_summary(samples)
