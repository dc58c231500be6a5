"""Running sequences (OpenWhisk's ``SequenceActions.scala``). A sequence request arrives on
``ft.activations`` like any activation; instead of placing it, the initializer runs its
components one after the other, each a normal blocking activation answered on this
initializer's reply queue, and writes the sequence's own record last.

Lossless and idempotent: the request is acked only after the record is written (the caller
does that), component ids are derived from the sequence id and the position, and a component
that already has a record is not run again. So a redelivered sequence resumes where the lost
run stopped, and the first-write-wins record store keeps a single sequence record.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from bus.broker import ACTIVATIONS, Broker
from bus.ids import now_ms
from bus.models import (
    ActivationRecord,
    ActivationRequest,
    ActivationResponse,
    KeyValue,
    StatusCode,
)
from bus.replies import ReplyFuture, ReplyWaiters
from bus.requests import SEQUENCE, ParametersNotAllowed, build_payload, build_request
from bus.resolution import ResolutionError, resolve_action, split_path
from bus.samples import SamplePublisher
from bus.store import Store
from initializer.answers import settle_record

log = logging.getLogger(__name__)

CAUSED_BY = "sequence"
COMPONENT_MISSING = "Sequence component does not exist."
PARAMETERS_NOT_ALLOWED = (
    "Request defines parameters that are not allowed (e.g., reserved properties)."
)
COMPONENT_LOST = "Sequence component did not complete in time."
COMPONENT_GRACE_S = 60  # each component may take its own time limit plus a minute
RESUMED_READ_INTERVAL_S = 1.0

# Fixed forever: a redelivered sequence must derive the same component ids.
_COMPONENT_IDS = uuid.UUID("0b7e3c5a-91d2-4f6e-8a47-3c2d5e9f1a60")


def component_activation_id(sequence_id: str, position: int) -> str:
    return uuid.uuid5(_COMPONENT_IDS, f"{sequence_id}/{position}").hex


def is_sequence(req: ActivationRequest) -> bool:
    return req.action.kind == SEQUENCE


@dataclass
class Progress:
    """What the components did so far."""

    payload: Any
    status: StatusCode = StatusCode.SUCCESS
    result: Any = None
    component_ids: list[str] = field(default_factory=list)
    duration: int = 0
    memory: int = 0

    def fail(self, status: StatusCode, message: str) -> None:
        self.status, self.result = status, {"error": message}


class SequenceRunner:
    def __init__(
        self, store: Store, broker: Broker, waiters: ReplyWaiters, samples: SamplePublisher
    ) -> None:
        self.store = store
        self.samples = samples
        self.broker = broker
        self.waiters = waiters

    async def run(self, req: ActivationRequest, *, resumed: bool = False) -> None:
        """Run ``req`` to its record and answer a blocking caller. Raises (and the request
        must then not be acked) if that could not be completed. ``resumed``: a redelivery,
        whose earlier run may have left components running."""
        record = await self.store.get_record(req.activation_id)
        if record is None:
            record = await self._execute(req, resumed)
        # A redelivery finds the record there: it only answers the caller with it.
        await settle_record(self.store, self.broker, req, record, samples=self.samples)

    async def _execute(self, req: ActivationRequest, resumed: bool) -> ActivationRecord:
        start = now_ms()
        progress = Progress(payload=req.payload, result=req.payload)
        for position, path in enumerate(req.action.components or []):
            await self._run_component(req, position, path, progress, resumed)
            result = progress.result
            if progress.status != StatusCode.SUCCESS or (
                isinstance(result, dict) and "error" in result
            ):
                break  # short-circuit: the failing component's result is the sequence's
            progress.payload = result if isinstance(result, dict) else {}
        return self._record(req, start, progress)

    async def _run_component(
        self, req: ActivationRequest, position: int, path: str, progress: Progress,
        resumed: bool,
    ) -> None:
        aid = component_activation_id(req.activation_id, position)
        record = await self.store.get_record(aid)  # done by an earlier delivery
        if record is None:
            # Resolved as the sequence's owner, who vouched for its components when it
            # was written; a component reached through a package or a binding gets their
            # parameters under its own, as when invoked directly.
            owner, name = split_path(path)
            try:
                action = await resolve_action(
                    self.store, req.action.namespace.split("/", 1)[0], owner, name)
            except ResolutionError:
                progress.fail(StatusCode.APPLICATION_ERROR, COMPONENT_MISSING)
                return
            try:
                payload = build_payload(action.doc, progress.payload, base=action.base)
            except ParametersNotAllowed:
                progress.fail(StatusCode.APPLICATION_ERROR, PARAMETERS_NOT_ALLOWED)
                return
            request = build_request(
                action.doc, payload, namespace=req.invoking_namespace,
                activation_id=aid, transaction_id=req.transaction_id,
                reply_to=self.waiters.queue_name, cause=req.activation_id,
                caused_by=CAUSED_BY, binding=action.binding,
            )
            request.traceparent = req.traceparent  # components are the sequence's trace
            record = await self._activate(request, action.doc.limits.timeout, resumed=resumed)
            if record is None:
                progress.fail(StatusCode.WHISK_ERROR, COMPONENT_LOST)
                return
        progress.component_ids.append(aid)
        progress.duration += record.duration
        limits = record.annotation("limits") or {}
        progress.memory = max(progress.memory, int(limits.get("memory", 0)))
        progress.status = record.response.status_code
        progress.result = record.response.result

    async def _activate(
        self, request: ActivationRequest, timeout_ms: int, *, resumed: bool
    ) -> ActivationRecord | None:
        aid = request.activation_id
        future = self.waiters.register(aid)
        wait_s = timeout_ms / 1000 + COMPONENT_GRACE_S
        try:
            await self.broker.publish(request, routing_key=ACTIVATIONS, message_id=aid)
            if resumed:
                return await self._wait_or_read(future, aid, wait_s)
            return await asyncio.wait_for(future, wait_s)
        except TimeoutError:
            # One read: the reply may have been lost while the record was written.
            return await self.store.get_record(aid)
        finally:
            self.waiters.discard(aid)

    async def _wait_or_read(
        self, future: ReplyFuture, aid: str, wait_s: float
    ) -> ActivationRecord | None:
        """A resumed sequence's component may still be running from the lost delivery: an
        invoker keeps answering that delivery's (dead) reply queue, so the record is also
        read now and then. Only resumed sequences pay for this."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError
            try:
                return await asyncio.wait_for(
                    asyncio.shield(future), min(RESUMED_READ_INTERVAL_S, remaining))
            except TimeoutError:
                record = await self.store.get_record(aid)
                if record is not None:
                    return record

    @staticmethod
    def _record(req: ActivationRequest, start: int, progress: Progress) -> ActivationRecord:
        action = req.action
        limits = action.limits.model_dump() | {
            "memory": progress.memory or action.limits.memory}
        annotations = []
        if req.caused_by is None:
            annotations.append(KeyValue(key="topmost", value=True))
        annotations += [
            KeyValue(key="path", value=action.path),
            KeyValue(key="kind", value=SEQUENCE),
            KeyValue(key="limits", value=limits),
            KeyValue(key="waitTime", value=max(0, start - req.accepted_at)),
        ]
        if req.caused_by:
            annotations.append(KeyValue(key="causedBy", value=req.caused_by))
        if req.binding:
            annotations.append(KeyValue(key="binding", value=req.binding))
        return ActivationRecord(
            namespace=req.invoking_namespace, name=action.name, version=action.version,
            subject=req.subject, activationId=req.activation_id, start=start,
            end=max(now_ms(), start + 1),
            response=ActivationResponse(status_code=progress.status, result=progress.result),
            logs=progress.component_ids, annotations=annotations, cause=req.cause,
            attempts=req.attempt, reported_duration=progress.duration,
        )
