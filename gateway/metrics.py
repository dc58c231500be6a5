"""The gateway's own metrics: ``ft_gateway_*`` and OpenWhisk's rate-limit counters (served
with the cluster's by ``gateway.observability``)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram

from bus.telemetry import new_registry

INVOKE_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5,
                  1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or new_registry()
        self.invoke_latency = Histogram(
            "ft_gateway_invoke_seconds",
            "Invoke requests through this gateway, until answered (blocking: with the result)",
            ["blocking"], buckets=INVOKE_BUCKETS, registry=self.registry)
        self.invoke_blocking = self.invoke_latency.labels("true")
        self.invoke_async = self.invoke_latency.labels("false")
        self.direct = Counter(
            "ft_gateway_direct", "Blocking invokes tried on the direct path, by outcome "
            "(hit: answered there; declined, lost, pending: sent through the initializer)",
            ["outcome"], registry=self.registry)
        self.responses = Counter(
            "ft_gateway_responses", "Responses by HTTP status code (4xx and 5xx: refused)",
            ["code"], registry=self.registry)
        # OpenWhisk's user-events names for its two throttles (429s).
        self.limit_timed = Counter(
            "openwhisk_action_limit_timed", "Invokes refused over the per-minute throttle",
            ["namespace"], registry=self.registry)
        self.limit_concurrent = Counter(
            "openwhisk_action_limit_concurrent",
            "Invokes refused over the concurrent-invocations throttle", ["namespace"],
            registry=self.registry)
        self.fires_limited = Counter(
            "ft_trigger_limit_timed", "Trigger fires refused over the per-minute throttle",
            ["namespace"], registry=self.registry)

        self._response_counts: dict[int, Callable[[], None]] = {}

    def count_response(self, status: int) -> None:
        count = self._response_counts.get(status)
        if count is None:
            count = self._response_counts[status] = self.responses.labels(str(status)).inc
        count()

    def throttled(self, namespace: str, limit: str) -> None:
        counter = self.limit_concurrent if limit == "concurrent" else self.limit_timed
        counter.labels(namespace).inc()

