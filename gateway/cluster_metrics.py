"""What a gateway knows of the whole cluster: every finished activation's sample (fanout
``ft.metrics``) and every invoker's heartbeat (``gateway.heartbeats``).

From the samples come OpenWhisk's user-events metrics, with OpenWhisk's names and labels so
its Grafana dashboards can be pointed at ``/metrics`` (``openwhisk_action_activations_total``
and the rest, counted since this gateway started, as Prometheus counters are), and the
per-second ``Activity`` the dashboard charts. Every gateway consumes every sample, so any of
them answers for the cluster."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from prometheus_client import CollectorRegistry, Counter, Histogram

from bus.broker import METRICS, Broker
from bus.codec import unpack
from bus.models import ActivationSample, ActivationSamples
from bus.samples import STATUS_LABELS
from gateway.activity import Activity
from gateway.heartbeats import InvokerBeats

log = logging.getLogger(__name__)

# Seconds: from a warm run's milliseconds to the 5-minute action limit.
TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0, 120.0, 300.0)

ACTION = ["namespace", "initiator", "action"]


@dataclass(frozen=True)
class _Children:
    """The label children one kind of sample updates, looked up once."""

    activations: Callable[[], None]
    cold_starts: Callable[[], None]
    status: Callable[[], None]
    wait: Callable[[float], None]
    init: Callable[[float], None]
    duration: Callable[[float], None]


class ActionMetrics:
    """OpenWhisk's ``openwhisk_action_*`` metrics (core/monitoring/user-events)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.activations = Counter(
            "openwhisk_action_activations", "Activations", [*ACTION, "kind", "memory"],
            registry=registry)
        self.cold_starts = Counter(
            "openwhisk_action_coldStarts", "Activations that initialized their container",
            ACTION, registry=registry)
        self.status = Counter(
            "openwhisk_action_status", "Activations by response status", [*ACTION, "status"],
            registry=registry)
        self.wait = Histogram(
            "openwhisk_action_waitTime_seconds", "From accepted to started", ACTION,
            buckets=TIME_BUCKETS, registry=registry)
        self.init = Histogram(
            "openwhisk_action_initTime_seconds", "Initialization, on cold starts", ACTION,
            buckets=TIME_BUCKETS, registry=registry)
        self.duration = Histogram(
            "openwhisk_action_duration_seconds", "Run time (init included)", ACTION,
            buckets=TIME_BUCKETS, registry=registry)
        self._children: dict[tuple[object, ...], _Children] = {}

    def count(self, sample: ActivationSample) -> None:
        key = (sample.namespace, sample.initiator, sample.action, sample.kind, sample.memory,
               sample.status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._children_of(sample)
        children.activations()
        children.status()
        children.wait(sample.wait_ms / 1000)
        children.duration(sample.duration_ms / 1000)
        if sample.init_ms is not None:
            children.cold_starts()
            children.init(sample.init_ms / 1000)

    def _children_of(self, sample: ActivationSample) -> _Children:
        action = (sample.namespace, sample.initiator, sample.action)
        return _Children(
            activations=self.activations.labels(*action, sample.kind, str(sample.memory)).inc,
            cold_starts=self.cold_starts.labels(*action).inc,
            status=self.status.labels(*action, STATUS_LABELS[sample.status]).inc,
            wait=self.wait.labels(*action).observe,
            init=self.init.labels(*action).observe,
            duration=self.duration.labels(*action).observe,
        )


class ClusterView:
    def __init__(self, broker: Broker, *, enabled: bool = True) -> None:
        self.broker = broker
        self.enabled = enabled
        self.registry = CollectorRegistry()
        self.actions = ActionMetrics(self.registry)
        self.activity = Activity()
        self.beats = InvokerBeats(broker)
        self.closing = asyncio.Event()  # set when the gateway stops: dashboard streams end
        self._samples: AbstractQueue | None = None

    async def start(self) -> None:
        await self.beats.start()
        if self.enabled:
            self._samples = await self.broker.consume(None, self._on_samples, prefetch=256,
                                                      bind_to=METRICS, auto_ack=True)

    async def close(self) -> None:
        await self.beats.close()
        if self._samples is not None:
            await self.broker.stop_consuming(self._samples)

    async def _on_samples(self, message: AbstractIncomingMessage) -> None:
        try:
            samples = unpack(message.body, ActivationSamples).samples
        except Exception:
            log.exception("undecodable activation samples dropped")
            return
        for sample in samples:
            self.actions.count(sample)
            self.activity.add(sample)
