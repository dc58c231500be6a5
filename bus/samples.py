"""Activation samples: what every process that finishes activations tells the gateways'
metrics, on the fanout exchange ``ft.metrics``.

The invokers (and the initializers, for the error and sequence records they write) send one
``ActivationSamples`` every tenth of a second, however many activations finished meanwhile;
each gateway consumes them all into the cluster's ``openwhisk_action_*`` metrics
(``gateway.cluster_metrics``). A sample is a few numbers and labels, never a result or logs,
so counting a cluster costs a few messages a second, not one per activation."""

from __future__ import annotations

import asyncio
import logging

from bus.broker import METRICS, Broker, spawn
from bus.models import ActivationRecord, ActivationSample, ActivationSamples, StatusCode

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1
MAX_BATCH = 2000

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
    # Built from a validated record's own typed fields: no second validation.
    return ActivationSample.model_construct(
        namespace=record.namespace, initiator=record.subject, action=action,
        kind=str(record.annotation("kind", "unknown")), memory=_int(memory) or 0,
        status=record.response.status_code, duration_ms=record.duration,
        wait_ms=_int(record.annotation("waitTime")) or 0,
        init_ms=_int(record.annotation("initTime")), end=record.end or record.start,
    )


class SamplePublisher:
    """Collects the samples of finished activations and publishes them every
    ``FLUSH_INTERVAL_S`` as one message (a burst's thousands of activations cost the bus a
    handful of messages, not one each). ``add`` a record where it became *the* record (the
    first write of its id), so a redelivered or duplicated activation is counted once.
    Advisory like heartbeats: no confirm; a batch that cannot be sent is logged and dropped
    (the records themselves are in Redis)."""

    def __init__(self, broker: Broker, source: str, *, enabled: bool = True) -> None:
        self.broker = broker
        self.source = source
        self.enabled = enabled
        self._pending: list[ActivationSample] = []
        self._flush_at: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def add(self, record: ActivationRecord) -> None:
        if not self.enabled:
            return
        self._pending.append(sample_of(record))
        if len(self._pending) >= MAX_BATCH:
            self._send_pending()
        elif self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_later(
                FLUSH_INTERVAL_S, self._send_pending)

    async def flush(self) -> None:
        """Send what is pending now (a process that stops)."""
        self._send_pending()
        if self._sending:
            await asyncio.wait(list(self._sending))

    def _send_pending(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if self._pending:
            samples, self._pending = self._pending, []
            spawn(self._send(samples), self._sending)

    async def _send(self, samples: list[ActivationSample]) -> None:
        try:
            await self.broker.publish(
                ActivationSamples(source=self.source, samples=samples), exchange=METRICS,
                routing_key="", persistent=False, mandatory=False, confirm=False)
        except Exception as exc:
            log.warning("%d activation samples not sent: %s", len(samples), exc)
