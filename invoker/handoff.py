"""What happens to an activation once it ran: retry it later, or hand its final answer on.

Final: the record goes to Redis (the durable answer), a destination (if the action's async
policy names one) goes to ``ft.destinations``, then the advisory messages (reply to a waiting
gateway, then the completion to the initializers and the event on ``ft.activation-events``,
which go out with the others of the same event-loop turn once it ends), then the ack.
Retry: the request goes back through a delay queue with ``attempt + 1`` and no record is
written, so the one record an activation gets is its final one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bus.broker import COMPLETIONS, Broker
from bus.coalesce import Coalescer
from bus.events import (
    DESTINATIONS_QUEUE,
    Destination,
    DestinationRecord,
)
from bus.ids import now_ms
from bus.models import (
    ActivationDone,
    ActivationRecord,
    ActivationRequest,
    Completion,
    Completions,
)
from bus.samples import SamplePublisher
from bus.store import Store

log = logging.getLogger(__name__)

async def _until_done(what: str, step: Callable[[], Awaitable[None]]) -> None:
    """Retry a hand-off until it succeeds: the message stays unacked meanwhile, so an outage
    of Redis or RabbitMQ delays this activation and never drops it."""
    delay = 0.05
    while True:
        try:
            await step()
            return
        except Exception as exc:
            log.warning("%s failed, retrying: %s", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


@dataclass
class _RecordWrite:
    record: ActivationRecord
    stored: bool = False


class Handoff:
    def __init__(
        self, store: Store, broker: Broker, invoker_id: str, retry_base_ms: int,
        samples: SamplePublisher,
    ) -> None:
        self.store = store
        self.samples = samples
        self.broker = broker
        self.invoker_id = invoker_id
        self.retry_base_ms = retry_base_ms
        self._delay_queues: set[int] = set()
        self.completions: Coalescer[Completion] = Coalescer(self._send_completions, "completions")
        # Events go out after the turn that finished their activations: a direct-path answer
        # or a reply then leaves before the event's JSON is built.
        self._events: Coalescer[ActivationRecord] = Coalescer(self._publish_events,
                                                              "activation events")
        self._records: Coalescer[_RecordWrite] = Coalescer(self._write_records, "records")

    async def finish(self, req: ActivationRequest, record: ActivationRecord) -> None:
        """Everything but the ack, which is the caller's (its message may carry others)."""
        condition = self._final_condition(req, record)
        if condition is None:
            await _until_done(f"retry of {req.activation_id}", lambda: self._retry_later(req))
            await self._advise(req, record, final=False)
        else:
            record = await self.store_record(record)
            await self._send_destination(req, record, condition)
            await self._advise(req, record, final=True)

    async def _send_completions(self, completed: list[Completion]) -> None:
        await self.broker.publish(
            Completions(invoker_id=self.invoker_id, completed=completed),
            exchange=COMPLETIONS, routing_key="", persistent=False, mandatory=False,
            confirm=False)

    async def answer_again(self, req: ActivationRequest, record: ActivationRecord) -> None:
        """A redelivered request that already has its record: tell the waiters once more."""
        await self._advise(req, record, final=True)

    def _final_condition(self, req: ActivationRequest, record: ActivationRecord) -> str | None:
        """None means "retry later"; otherwise the DestinationRecord condition."""
        policy = req.policy
        if record.response.success:
            return "Success"
        if policy is None:
            return "Error"
        if now_ms() - req.accepted_at > req.max_age_ms:
            return "EventAgeExceeded"
        if req.attempt > policy.max_retries:
            return "RetriesExhausted"
        return None

    async def _retry_later(self, req: ActivationRequest) -> None:
        delay_ms = self.retry_base_ms * 2 ** (req.attempt - 1)
        if delay_ms not in self._delay_queues:
            await self.broker.declare_delay_queue(delay_ms)
            self._delay_queues.add(delay_ms)
        retry = req.model_copy(update={"attempt": req.attempt + 1})
        await self.broker.publish(retry, routing_key=f"ft.delay.{delay_ms}",
                                  message_id=req.activation_id)

    async def store_record(self, record: ActivationRecord) -> ActivationRecord:
        """The record as stored: ``record``, or an earlier delivery's if that one won. The
        records finished in one event-loop turn are written in one round trip."""
        write = _RecordWrite(record)

        async def written() -> None:
            await self._records.submit(write)
            if not write.stored:  # an earlier delivery answered
                write.record = await self.store.get_record(record.activationId) or record

        await _until_done(f"record of {record.activationId}", written)
        return write.record

    async def _write_records(self, writes: list[_RecordWrite]) -> None:
        outcomes = await self.store.write_records([w.record for w in writes])
        for write, stored in zip(writes, outcomes, strict=True):
            write.stored = stored
            if stored:
                self.samples.add(write.record)

    async def _send_destination(
        self, req: ActivationRequest, record: ActivationRecord, condition: str
    ) -> None:
        policy = req.policy
        if policy is None:
            return
        target = policy.on_success if condition == "Success" else policy.on_failure
        if not target:
            return
        response = record.response.to_api()
        destination = Destination(
            target=target, namespace=req.invoking_namespace, subject=req.subject,
            record=DestinationRecord(
                timestamp=now_ms(), activation_id=req.activation_id,
                action=f"/{req.action.path}", condition=condition,  # type: ignore[arg-type]
                attempts=req.attempt, request_payload=req.payload, response=response,
            ),
        )
        await _until_done(
            f"destination of {req.activation_id}",
            lambda: self.broker.publish(destination, routing_key=DESTINATIONS_QUEUE,
                                        message_id=req.activation_id),
        )

    async def _advise(self, req: ActivationRequest, record: ActivationRecord, final: bool) -> None:
        """Advisory messages: the record in Redis is the truth, so these skip confirms."""
        try:
            if final and req.reply_to:
                await self.broker.publish(
                    ActivationDone(activation_id=req.activation_id, record=record),
                    routing_key=req.reply_to, persistent=False, mandatory=False, confirm=False)
            self.completions.add(Completion(
                activation_id=req.activation_id, action_key=req.action.key,
                memory=req.action.limits.memory, status_code=record.response.status_code))
            if final:
                self._events.add(record)
        except Exception as exc:
            log.warning("could not announce %s: %s", req.activation_id, exc)

    def announce(self, record: ActivationRecord) -> None:
        """Only the completion event: for direct-path activations nobody else waits on."""
        self._events.add(record)

    async def flush(self) -> None:
        """Until the completions and events of every finished activation were sent."""
        await self.completions.flush()
        await self._events.flush()
        await self.samples.flush()

    async def _publish_events(self, records: list[ActivationRecord]) -> None:
        """Completion events on ``ft.activation-events`` (topic ``ns.action.status``)."""
        for record in records:
            await self.broker.announce_activation(record)
