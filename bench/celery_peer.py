"""Celery 5, measured the way the issue's reference was: ``add.delay(1, 2).get()`` one after
the other against a ``-P solo`` worker, and N no-op tasks enqueued while a ``-P prefork -c 2``
worker consumes them ("live"), timed until every result is in Redis.

Runs in the bench venv (Celery is not a platform dependency) as a child of the bench, with both
workers up for the whole run, so the bench can take its measurements in turns with the
platform's (``bench.celery_driver``): one JSON line on stdout when ready, then one per command
read from stdin:

    latency N     N delay().get() round trips: {"samples": [ms, ...]}
    live N        N live no-op tasks: {"tasks", "done", "enqueue_s", "elapsed_s", "errors"}
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
from contextlib import ExitStack, contextmanager
from typing import Any

from bench.stats import ms_since

WARM_UP_CALLS = 100


@contextmanager
def worker(pool: str, concurrency: int, queue: str) -> Iterator[None]:
    """A Celery worker as a child process, answering pings before we go on."""
    from bench.celery_tasks import app

    name = f"bench-{pool}-{uuid.uuid4().hex[:6]}@localhost"
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.celery_tasks", "worker", "-P", pool,
         "-c", str(concurrency), "-Q", queue, "-n", name, "--loglevel=WARNING"],
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


def delay_get_samples(n: int) -> list[float]:
    from bench.celery_tasks import add

    samples = []
    for _ in range(n):
        started = time.perf_counter()
        add.delay(1, 2).get(timeout=30)
        samples.append(ms_since(started))
    return samples


def live_tasks(tasks: int, timeout_s: float) -> dict[str, Any]:
    import redis

    from bench.celery_tasks import app, noop

    results = redis.Redis.from_url(app.conf.result_backend)
    try:
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
    finally:
        results.close()
    return {"tasks": tasks, "done": done, "enqueue_s": round(enqueue_s, 3),
            "elapsed_s": round(elapsed_s, 3), "errors": tasks - done}


def serve(timeout_s: float) -> None:
    from bench.celery_tasks import LATENCY_QUEUE, LIVE_QUEUE, add, noop

    with ExitStack() as workers:
        workers.enter_context(worker("solo", 1, LATENCY_QUEUE))
        workers.enter_context(worker("prefork", 2, LIVE_QUEUE))
        for _ in range(WARM_UP_CALLS):  # connections and the result subscription warm
            add.delay(1, 2).get(timeout=30)
        noop.delay().get(timeout=30)
        _answer({"ready": True})
        for line in sys.stdin:
            command, _, count = line.partition(" ")
            if command == "latency":
                _answer({"samples": delay_get_samples(int(count))})
            elif command == "live":
                _answer(live_tasks(int(count), timeout_s))
            else:
                break


def _answer(found: dict[str, Any]) -> None:
    print(json.dumps(found), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Celery 5 peer measurements")
    parser.add_argument("--broker", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--timeout-s", type=float, default=300)
    args = parser.parse_args()
    # bench.celery_tasks reads these when imported, in this process and in the workers.
    os.environ["FT_BENCH_CELERY_BROKER"] = args.broker
    os.environ["FT_BENCH_CELERY_BACKEND"] = args.backend
    serve(args.timeout_s)


if __name__ == "__main__":
    main()
