"""Explicit error records: what an activation gets instead of silence when it cannot run or
its invoker never answered."""

from __future__ import annotations

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
    written = await store.write_record(record)
    if written:
        samples.add(record)
    else:
        record = await store.get_record(req.activation_id) or record
    if req.reply_to:
        await broker.publish(
            ActivationDone(activation_id=req.activation_id, record=record),
            routing_key=req.reply_to, persistent=False, mandatory=False, confirm=False)
    return written
