"""Explicit error records: what an activation gets instead of silence when it cannot run or
its invoker never answered."""

from __future__ import annotations

import logging

from bus.broker import Broker
from bus.ids import now_ms
from bus.models import (
    ActivationDone,
    ActivationRecord,
    ActivationRequest,
    ActivationResponse,
    KeyValue,
    StatusCode,
)
from bus.samples import SamplePublisher
from bus.store import Store

log = logging.getLogger(__name__)


async def answer_with_error(
    store: Store, broker: Broker, req: ActivationRequest, error: str, *,
    samples: SamplePublisher, invoker_id: str | None = None,
) -> bool:
    """Write a whisk internal error record unless the activation has one, and tell a waiting
    caller. First write wins, so a late real result cannot make a second record. True if
    this error became the record."""
    now = now_ms()
    record = ActivationRecord(
        namespace=req.invoking_namespace, name=req.action.name, version=req.action.version,
        subject=req.subject, activationId=req.activation_id, start=now, end=now,
        response=ActivationResponse(status_code=StatusCode.WHISK_ERROR, result={"error": error}),
        annotations=[KeyValue(key="path", value=req.action.path),
                     KeyValue(key="kind", value=req.action.kind)],
        cause=req.cause, attempts=req.attempt, invoker=invoker_id,
    )
    return await settle_record(store, broker, req, record, samples=samples)


async def announce(broker: Broker, record: ActivationRecord) -> None:
    """``record`` on ``ft.activation-events``; advisory, so a failure is only logged (a
    waiting gateway reads the store again a few seconds later)."""
    try:
        await broker.announce_activation(record)
    except Exception as exc:
        log.warning("could not announce %s: %s", record.activationId, exc)


async def settle_record(
    store: Store, broker: Broker, req: ActivationRequest, record: ActivationRecord, *,
    samples: SamplePublisher,
) -> bool:
    """Write ``record`` unless the activation has one (first write wins), count and announce
    the one written, and answer a waiting caller with the record that stands. True if
    ``record`` became the record."""
    written = await store.write_record(record)
    if written:
        samples.add(record)
        await announce(broker, record)
    else:
        record = await store.get_record(req.activation_id) or record
    if req.reply_to:
        await broker.publish(
            ActivationDone(activation_id=req.activation_id, record=record),
            routing_key=req.reply_to, persistent=False, mandatory=False, confirm=False)
    return written
