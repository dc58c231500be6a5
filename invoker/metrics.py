"""The invoker's own metrics (``ft_invoker_*``), served on its ``metrics_port``.

The pool's inventory is read when scraped (a collector over the pool, no second bookkeeping);
what happened is counted where the driver executes the pool's commands: each ``Run`` says how
its container started, each direct request whether it was taken."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from invoker.pool import ContainerPool

# Container creation from the backend's call to the proxy answering: milliseconds for a
# sandbox from the zygote, hundreds of them through Docker.
START_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0)


def kind_label(container_kind: str) -> str:
    """A container's kind as a label: a blackbox's names its image, which is left out."""
    return "blackbox" if container_kind.startswith("blackbox") else container_kind


class PoolCollector(Collector):
    def __init__(self, pool: ContainerPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        pool = self.pool
        containers = GaugeMetricFamily(
            "ft_invoker_containers", "Containers in the pool by state", labels=["state"])
        for state, count in pool.state_counts().items():
            containers.add_metric([state], count)
        yield containers
        yield GaugeMetricFamily("ft_invoker_memory_used_mb",
                                "Memory held by the pool's containers (MB)",
                                value=pool.used_memory)
        yield GaugeMetricFamily("ft_invoker_memory_free_mb",
                                "User memory no container holds (MB)", value=pool.free_memory)
        yield GaugeMetricFamily("ft_invoker_buffered_jobs",
                                "Activations taken and waiting for a container",
                                value=pool.queued_count)
        yield GaugeMetricFamily("ft_invoker_running_jobs",
                                "Activations running or having their container made",
                                value=pool.busy_count)


class InvokerMetrics:
    def __init__(self, registry: CollectorRegistry, pool: ContainerPool) -> None:
        registry.register(PoolCollector(pool))
        # OpenWhisk's invoker counts containerStart{containerState}: cold, prewarmed, warm.
        self.container_starts = Counter(
            "ft_invoker_container_starts", "Activations by how their container started",
            ["containerState", "kind"], registry=registry)
        self.container_create = Histogram(
            "ft_invoker_container_create_seconds",
            "Making a container until its proxy answers (cold starts and stem cells)",
            ["kind"], buckets=START_BUCKETS, registry=registry)
        self.direct = Counter(
            "ft_invoker_direct_requests", "Direct-path requests by outcome (taken or declined)",
            ["outcome"], registry=registry)
        self.activations = Counter(
            "ft_invoker_activations", "Activations finished here, by status", ["status"],
            registry=registry)
