"""Activation samples: what every process that finishes activations tells the gateways'
metrics, on the fanout exchange ``ft.metrics``.

The invokers (and the initializers, for the error records they write) send one
``ActivationSamples`` per turn of their event loop, however many activations finished in it;
each gateway consumes them all into the cluster's ``openwhisk_action_*`` metrics
(``gateway.cluster_metrics``). A sample is a few numbers and labels, never a result or logs,
so counting a cluster costs a message per turn, not one per activation."""

from __future__ import annotations

from bus.broker import METRICS, Broker
from bus.coalesce import Coalescer
from bus.models import ActivationRecord, ActivationSample, ActivationSamples, StatusCode

# OpenWhisk's user-events status label values (openwhisk_action_status{status}).
STATUS_LABELS = {
    StatusCode.SUCCESS: "success",
    StatusCode.APPLICATION_ERROR: "application_error",
    StatusCode.DEVELOPER_ERROR: "action_developer_error",
    StatusCode.WHISK_ERROR: "whisk_internal_error",
}


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def sample_of(record: ActivationRecord) -> ActivationSample:
    path = record.annotation("path")
    # "ns/pkg/name" -> "pkg/name": the namespace has its own label.
    action = path.split("/", 1)[1] if isinstance(path, str) and "/" in path else record.name
    limits = record.annotation("limits")
    memory = limits.get("memory") if isinstance(limits, dict) else None
    return ActivationSample(
        namespace=record.namespace, initiator=record.subject, action=action,
        kind=str(record.annotation("kind", "unknown")), memory=_int(memory) or 0,
        status=record.response.status_code, duration_ms=record.duration,
        wait_ms=_int(record.annotation("waitTime")) or 0,
        init_ms=_int(record.annotation("initTime")), end=record.end or record.start,
    )


class SamplePublisher:
    """Collects the samples of finished activations and publishes those of one turn as one
    message. ``add`` a record where it became *the* record (the first write of its id), so a
    redelivered or duplicated activation is counted once. Advisory like heartbeats: no
    confirm; a failed batch is logged and dropped (the records themselves are in Redis)."""

    def __init__(self, broker: Broker, source: str, *, enabled: bool = True) -> None:
        self.broker = broker
        self.source = source
        self.enabled = enabled
        self._batches: Coalescer[ActivationSample] = Coalescer(self._send, "activation samples",
                                                               max_batch=1024)

    def add(self, record: ActivationRecord) -> None:
        if self.enabled:
            self._batches.add(sample_of(record))

    async def flush(self) -> None:
        await self._batches.flush()

    async def _send(self, samples: list[ActivationSample]) -> None:
        await self.broker.publish(
            ActivationSamples(source=self.source, samples=samples), exchange=METRICS,
            routing_key="", persistent=False, mandatory=False, confirm=False)
