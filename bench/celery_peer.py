"""Celery 5, measured the way the issue's reference was: ``add.delay(1, 2).get()`` one after
the other against a ``-P solo`` worker, and N no-op tasks enqueued while a ``-P prefork -c 2``
worker consumes them ("live"), timed until every result is in Redis.

Runs in the bench venv (Celery is not a platform dependency), started by the bench:

    bench/.venv/bin/python -m bench.celery_peer --broker AMQP_URL --backend REDIS_URL \
        --latency-n 1000 --tasks 20000

and prints its results as one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.stats import ms_since, summary


@contextmanager
def worker(pool: str, concurrency: int) -> Iterator[None]:
    """A Celery worker as a child process, answering pings before we go on."""
    from bench.celery_tasks import app

    name = f"bench-{pool}-{uuid.uuid4().hex[:6]}@localhost"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.celery_tasks", "worker", "-P", pool,
         "-c", str(concurrency), "-n", name, "--loglevel=WARNING"],
        stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not app.control.ping(destination=[name], timeout=0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the celery worker ({pool}) did not start")
        yield
    finally:
        proc.terminate()  # warm shutdown
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def delay_get_latency(n: int) -> dict[str, float]:
    from bench.celery_tasks import add

    with worker("solo", 1):
        for _ in range(max(20, n // 10)):  # connections and the result subscription warm
            add.delay(1, 2).get(timeout=30)
        samples = []
        for _ in range(n):
            started = time.perf_counter()
            add.delay(1, 2).get(timeout=30)
            samples.append(ms_since(started))
    return summary(samples)


def live_throughput(tasks: int, timeout_s: float) -> dict[str, Any]:
    import redis

    from bench.celery_tasks import app, noop

    results = redis.Redis.from_url(app.conf.result_backend)
    with worker("prefork", 2):
        noop.delay().get(timeout=30)
        baseline = results.dbsize()  # one result per task: count keys, not read them
        started = time.perf_counter()
        for _ in range(tasks):
            noop.delay()
        enqueue_s = time.perf_counter() - started
        deadline = time.monotonic() + timeout_s
        while (done := results.dbsize() - baseline) < tasks:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        elapsed_s = time.perf_counter() - started
    results.close()
    return {"tasks": tasks, "done": done, "enqueue_s": round(enqueue_s, 3),
            "elapsed_s": round(elapsed_s, 3), "per_s": round(done / elapsed_s, 1),
            "errors": tasks - done}


def main() -> None:
    parser = argparse.ArgumentParser(description="Celery 5 peer measurements")
    parser.add_argument("--broker", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--latency-n", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--timeout-s", type=float, default=300)
    args = parser.parse_args()
    # bench.celery_tasks reads these when imported, in this process and in the workers.
    os.environ["FT_BENCH_CELERY_BROKER"] = args.broker
    os.environ["FT_BENCH_CELERY_BACKEND"] = args.backend
    out = {"delay().get() -P solo": delay_get_latency(args.latency_n),
           "live no-op tasks -P prefork -c 2": live_throughput(args.tasks, args.timeout_s)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
