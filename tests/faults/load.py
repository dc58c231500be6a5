"""A steady mix of blocking and non-blocking invokes, and the bookkeeping every fault
scenario ends with: each accepted activation id must end with exactly one record.

Each call carries an ``Idempotency-Key``: a caller whose gateway died before answering (so
it never learnt the activation id) retries with the same key, on the next gateway, and gets
the same activation. A retry is "not accepted yet", never a second activation."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from bus.store import Store

ACTIONS = "/api/v1/namespaces/_/actions"
ATTEMPTS = 60


def sleeper(seconds: float) -> str:
    return (f"import time\ndef main(args):\n    time.sleep({seconds})\n"
            "    return {'n': args.get('n')}\n")


async def put_action(http: aiohttp.ClientSession, name: str, code: str, timeout_ms: int,
                     memory: int = 256, annotations: dict[str, object] | None = None) -> None:
    body = {"exec": {"kind": "python:3.11", "code": code},
            "limits": {"timeout": timeout_ms, "memory": memory},
            "annotations": [{"key": k, "value": v} for k, v in (annotations or {}).items()]}
    async with http.put(f"{ACTIONS}/{name}?overwrite=true", json=body) as resp:
        assert resp.status == 200, await resp.text()


@dataclass
class Load:
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    sent: int = 0
    # Blocking calls answered 202 (their wait ran out): fetched later by id.
    answered_later: list[str] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)


async def _invoke(gateways: Sequence[aiohttp.ClientSession], name: str, n: int, load: Load,
                  key: str, blocking_timeout_ms: int) -> None:
    blocking = n % 2 == 0
    query = f"?blocking=true&timeout={blocking_timeout_ms}" if blocking else ""
    for attempt in range(ATTEMPTS):
        # A refused or broken call moves on to the next gateway, as a client with a list of
        # API hosts (or behind a load balancer) would.
        http = gateways[(n + attempt) % len(gateways)]
        try:
            async with http.post(f"{ACTIONS}/{name}{query}", json={"n": n},
                                 headers={"Idempotency-Key": key}) as resp:
                load.statuses[resp.status] = load.statuses.get(resp.status, 0) + 1
                body = await resp.json(content_type=None)
                aid = body.get("activationId") if isinstance(body, dict) else None
                if aid:
                    load.accepted.append(aid)
                    if blocking and resp.status == 202:
                        load.answered_later.append(aid)
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        load.refused += 1
        await asyncio.sleep(0.2)
    raise AssertionError(f"call {n} was never accepted after {ATTEMPTS} attempts")


async def run_load(http: aiohttp.ClientSession | Sequence[aiohttp.ClientSession], name: str,
                   total: int, concurrency: int = 16, blocking_timeout_ms: int = 20_000,
                   load: Load | None = None) -> Load:
    gateways = [http] if isinstance(http, aiohttp.ClientSession) else list(http)
    load = load or Load()
    gate = asyncio.Semaphore(concurrency)
    run = uuid.uuid4().hex[:8]

    async def one(n: int) -> None:
        async with gate:
            load.sent += 1
            await _invoke(gateways, name, n, load, f"{run}-{n}", blocking_timeout_ms)

    await asyncio.gather(*(one(n) for n in range(total)))
    return load


async def wait_for_accepted(load: Load, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(load.accepted) < count:
        assert time.monotonic() < deadline, f"only {len(load.accepted)} accepted"
        await asyncio.sleep(0.05)


async def wait_for_done(store: Store, load: Load, count: int, timeout: float = 60) -> None:
    """Until ``count`` accepted activations have records: the invokers are at work (rather
    than a fixed pause, which on a loaded machine may end before any container ran)."""
    done: set[str] = set()
    deadline = time.monotonic() + timeout
    while len(done) < count:
        assert time.monotonic() < deadline, f"only {len(done)} activations done"
        for aid in [a for a in load.accepted if a not in done]:
            if await store.has_record(aid):
                done.add(aid)
        await asyncio.sleep(0.1)


@dataclass
class Verdict:
    accepted: int
    succeeded: int
    failed_explicit: int
    lost: int
    duplicated: int
    recovery_s: float

    def line(self) -> str:
        return (f"accepted={self.accepted} succeeded={self.succeeded} "
                f"failed_explicit={self.failed_explicit} lost={self.lost} "
                f"duplicated={self.duplicated} recovery_s={self.recovery_s:.1f}")


async def verdict(store: Store, ns: str, name: str, load: Load, fault_at: float,
                  timeout: float = 45) -> Verdict:
    """Waits until every accepted id has a record (or ``timeout``), then counts."""
    ids = set(load.accepted)
    deadline = time.monotonic() + timeout
    records = {}
    while True:
        missing = [i for i in ids if i not in records]
        for aid in missing:
            record = await store.get_record(aid)
            if record is not None:
                records[aid] = record
        if len(records) == len(ids) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    recovery = time.monotonic() - fault_at
    # The record index holds each id once per record written: more members than ids would be
    # a record for an activation nobody was told about, fewer a record missing from listings.
    indexed = {m.decode() for m in await store.redis.zrange(f"ft:acts:{ns}:{name}", 0, -1)}
    succeeded = sum(1 for r in records.values() if r.response.success)
    return Verdict(
        accepted=len(ids), succeeded=succeeded, failed_explicit=len(records) - succeeded,
        lost=len(ids) - len(records), duplicated=len(load.accepted) - len(ids)
        + len(indexed - ids), recovery_s=recovery,
    )
