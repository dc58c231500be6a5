"""Back-pressure instead of collapse: with every invoker full, requests wait in the broker
(the initializer holds a bounded number, the rest stays queued) and blocking callers whose
wait runs out get 202 and the activation id, never an error. Every one runs in the end."""

from __future__ import annotations

import time
import uuid

import aiohttp

from bus.store import Store
from tests.cluster_fixtures import Cluster
from tests.faults.load import put_action, sleeper
from tests.faults.mixed import start_mixed


async def test_full_invokers_queue_work_and_blocking_callers_get_202(
    cluster: Cluster, http: aiohttp.ClientSession, store: Store
) -> None:
    name = f"full-{uuid.uuid4().hex[:6]}"
    # 2 invokers x 1024 MB = 8 slots of 256 MB; 32 calls of 2 s (16 callers at a time) keep
    # them all full for ~8 s, and every blocking caller's 1 s wait runs out before its
    # activation could have finished, even when it started at once.
    await put_action(http, name, sleeper(2.0), timeout_ms=10_000)
    mixed = await start_mixed(http, cluster.auth, cluster.settings.amqp_url, name, 32,
                              blocking_timeout_ms=1000)
    start = time.monotonic()
    load, result, fed = await mixed.verdicts(store, start, "all invokers full", timeout=90)
    errors = {status: n for status, n in load.statuses.items() if status not in (200, 202)}
    print(f"[all invokers full] statuses={load.statuses} blocking_answered_202="
          f"{len(load.answered_later)}")
    assert not errors, f"callers got errors instead of waiting: {errors}"
    assert load.answered_later, "no blocking caller had to wait: the invokers were never full"
    assert result.lost == 0 and result.duplicated == 0 and result.failed_explicit == 0
    assert result.succeeded == result.accepted == 32
    assert fed.lost == 0
