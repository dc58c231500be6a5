"""The Celery 5 app the bench compares the platform with: the same RabbitMQ (a vhost of its own)
as broker and the same Redis (a database of its own) as result backend, both named by the
environment. Imported only in the bench venv, by bench.celery_peer and by its workers."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("ft_bench", broker=os.environ["FT_BENCH_CELERY_BROKER"],
             backend=os.environ["FT_BENCH_CELERY_BACKEND"])
# Celery's defaults otherwise: the comparison is with Celery as people run it.
app.conf.broker_connection_retry_on_startup = True
# Two workers stay up side by side (bench.celery_peer), each on a queue of its own.
LATENCY_QUEUE, LIVE_QUEUE = "bench-latency", "bench-live"
app.conf.task_routes = {"bench.celery_tasks.add": {"queue": LATENCY_QUEUE},
                        "bench.celery_tasks.noop": {"queue": LIVE_QUEUE}}


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def noop() -> None:
    return None
