"""From a record to its sample, and from samples to OpenWhisk's metrics and the dashboard's
per-second activity (pure: no broker, no gateway)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from bus.models import ActionDoc, ActionExec, ActivationSample, Limits, StatusCode
from bus.requests import build_request
from bus.samples import sample_of
from gateway.activity import LATENCY_BOUNDS_MS, Activity, percentile
from gateway.cluster_metrics import ActionMetrics
from invoker.outcome import Outcome
from invoker.records import build_record


def _record(*, package: str | None = None, init_ms: int | None = 40,
            status: StatusCode = StatusCode.SUCCESS):
    name = f"{package}/resize" if package else "resize"
    doc = ActionDoc(namespace="acme", name=name, exec=ActionExec(kind="python:3.11", code="x"),
                    limits=Limits(memory=512))
    req = build_request(doc, {}, namespace="acme", activation_id="a" * 32, transaction_id="t")
    req.accepted_at = 1_000
    return build_record(req, Outcome(status, {"ok": True}), start=1_025, end=1_125, logs=[],
                        init_ms=init_ms, invoker_id="invoker0", container_start="cold")


def test_a_sample_carries_the_labels_and_times_of_its_record() -> None:
    sample = sample_of(_record(package="images"))
    assert sample.model_dump() == {
        "namespace": "acme", "initiator": "acme", "action": "images/resize",
        "kind": "python:3.11", "memory": 512, "status": StatusCode.SUCCESS,
        "duration_ms": 100, "wait_ms": 25, "init_ms": 40, "end": 1_125}
    assert sample_of(_record(init_ms=None)).init_ms is None


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_action_metrics_count_each_sample_once_under_openwhisk_names() -> None:
    registry = CollectorRegistry()
    metrics = ActionMetrics(registry)
    warm = sample_of(_record(init_ms=None))
    failed = sample_of(_record(status=StatusCode.DEVELOPER_ERROR))
    for sample in (warm, warm, failed):
        metrics.count(sample)
    action = {"namespace": "acme", "initiator": "acme", "action": "resize"}
    assert _value(registry, "openwhisk_action_activations_total", **action,
                  kind="python:3.11", memory="512") == 3
    assert _value(registry, "openwhisk_action_coldStarts_total", **action) == 1
    assert _value(registry, "openwhisk_action_status_total", **action, status="success") == 2
    assert _value(registry, "openwhisk_action_status_total", **action,
                  status="action_developer_error") == 1
    assert _value(registry, "openwhisk_action_initTime_seconds_count", **action) == 1
    assert _value(registry, "openwhisk_action_duration_seconds_sum", **action) == pytest.approx(0.3)
    assert _value(registry, "openwhisk_action_waitTime_seconds_bucket", **action,
                  le="0.025") == 3


def _sample(end_ms: int, latency_ms: int, *, ns: str = "acme", ok: bool = True,
            cold: bool = False) -> ActivationSample:
    return ActivationSample(
        namespace=ns, initiator=ns, action="a", kind="python:3.11", memory=256,
        status=StatusCode.SUCCESS if ok else StatusCode.APPLICATION_ERROR,
        duration_ms=latency_ms, wait_ms=0, init_ms=5 if cold else None, end=end_ms)


def test_percentile_reads_the_bucket_holding_the_rank() -> None:
    buckets = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    assert percentile(buckets, 0.5) is None
    buckets[0] = 98  # <= 1 ms
    buckets[16] = 2  # <= 100 ms
    assert percentile(buckets, 0.5) == 1
    assert percentile(buckets, 0.98) == 1
    assert percentile(buckets, 0.99) == LATENCY_BOUNDS_MS[16] == 100


def test_activity_series_per_namespace_and_window() -> None:
    activity = Activity(window_s=60)
    now_s = 10_000
    for i in range(10):  # 10 in the last 5 s, 2 of them failed, 1 cold
        activity.add(_sample(now_s * 1000 - i * 400, 3, ok=i >= 2, cold=i == 5))
    activity.add(_sample((now_s - 30) * 1000, 100, ns="other"))
    activity.add(_sample((now_s - 120) * 1000, 100))  # beyond the window
    acme = activity.series(["acme"], now_s, step_s=5)
    assert len(acme["t"]) == 12
    assert acme["activations_per_s"][-1] == 2.0
    assert acme["errors_per_s"][-1] == 0.4
    assert acme["cold_starts"][-1] == 1
    assert acme["p50_ms"][-1] == LATENCY_BOUNDS_MS[4]  # 3 ms falls in (2.37, 3.16]
    assert acme["totals"] == {"activations": 10, "errors": 2, "cold_starts": 1}
    everyone = activity.series(None, now_s, step_s=5)
    assert everyone["totals"]["activations"] == 11
    assert activity.namespaces() == ["acme", "other"]
    # A sample of an earlier second arriving late lands in its own second.
    activity.add(_sample((now_s - 2) * 1000, 3, ns="other"))
    assert activity.series(["other"], now_s, step_s=5)["activations_per_s"][-1] == 0.2
