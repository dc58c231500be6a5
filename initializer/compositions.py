"""Running compositions: sequences (OpenWhisk's ``SequenceActions.scala``) and conductor
actions (``docs/conductors.md``). A composition's request arrives on ``ft.activations`` like
any activation; instead of placing it, the initializer runs its steps (``sequences`` and
``conductors`` decide what each next one is), each a normal blocking activation answered on
this initializer's reply queue, and writes the composition's own record last.

Lossless and idempotent: the request is acked only after the record is written (the caller
does that), the ids of the activations it causes are derived from its id and their position,
and one that already has a record is not run again. So a redelivered composition resumes
where the lost run stopped, and the first-write-wins record store keeps a single record.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
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
from bus.requests import CONDUCTOR, SEQUENCE, ParametersNotAllowed, build_payload, build_request
from bus.resolution import ResolutionError, Unresolved, resolve_action, split_path
from bus.samples import SamplePublisher
from bus.store import Store
from initializer.answers import settle_record

log = logging.getLogger(__name__)

CAUSED_BY = "sequence"  # OpenWhisk marks a conductor's derived activations so too
PARAMETERS_NOT_ALLOWED = (
    "Request defines parameters that are not allowed (e.g., reserved properties)."
)
COMPONENT_GRACE_S = 60  # each component may take its own time limit plus a minute
RESUMED_READ_INTERVAL_S = 1.0
MAX_COMPONENTS = 50  # whisk.actionSequence.maxLength, for conductor actions too

# Fixed forever: a redelivered composition must derive the same ids.
_COMPONENT_IDS = uuid.UUID("0b7e3c5a-91d2-4f6e-8a47-3c2d5e9f1a60")


def component_activation_id(composition_id: str, position: int) -> str:
    return uuid.uuid5(_COMPONENT_IDS, f"{composition_id}/{position}").hex


@dataclass
class Progress:
    """What the derived activations did so far."""

    payload: Any
    status: StatusCode = StatusCode.SUCCESS
    result: Any = None
    component_ids: list[str] = field(default_factory=list)
    duration: int = 0
    memory: int = 0

    def fail(self, status: StatusCode, message: str) -> None:
        self.status, self.result = status, {"error": message}

    @property
    def failed(self) -> bool:
        """The last step did not succeed, or answered an ``error``."""
        return self.status != StatusCode.SUCCESS or (
            isinstance(self.result, dict) and "error" in self.result)


@dataclass(frozen=True)
class Failures:
    """How a kind of composition words what stops it."""

    missing: Callable[[str], str]  # the action at this path does not exist
    forbidden: Callable[[str], str]  # ... or may not be run by the composition's owner
    lost: Callable[[str], str]  # this activation did not complete in time


@dataclass(frozen=True)
class Step:
    """One activation a composition causes: the action at ``path`` on ``payload``."""

    path: str  # /ns/[pkg/]name
    payload: Any
    secondary: bool = False  # a conductor action's own code
    merged: bool = False  # ``payload`` already holds the action's parameters
    caller: str | None = None  # who runs it; by default the composition's owner


Steps = Callable[["CompositionRunner", ActivationRequest, Progress, bool], Awaitable[None]]


class CompositionRunner:
    def __init__(
        self, store: Store, broker: Broker, waiters: ReplyWaiters, samples: SamplePublisher
    ) -> None:
        self.store = store
        self.samples = samples
        self.broker = broker
        self.waiters = waiters

    async def run(self, req: ActivationRequest, steps: Steps, *, resumed: bool = False) -> None:
        """Run ``req`` to its record and answer a blocking caller. Raises (and the request
        must then not be acked) if that could not be completed. ``resumed``: a redelivery,
        whose earlier run may have left activations running."""
        record = await self.store.get_record(req.activation_id)
        if record is None:
            start = now_ms()
            progress = Progress(payload=req.payload, result=req.payload)
            await steps(self, req, progress, resumed)
            record = self._record(req, start, progress)
        # A redelivery finds the record there: it only answers the caller with it.
        await settle_record(self.store, self.broker, req, record, samples=self.samples)

    async def step(
        self, req: ActivationRequest, step: Step, progress: Progress, resumed: bool,
        failures: Failures,
    ) -> bool:
        """Run ``step`` as ``req``'s next derived activation; its record's status and result
        become ``progress``'s. False if it could not run (``progress`` then says why)."""
        aid = component_activation_id(req.activation_id, len(progress.component_ids))
        record = await self.store.get_record(aid)  # done by an earlier delivery
        if record is None:
            # Resolved as the composition's owner, who vouched for its components when it
            # was written; a component reached through a package or a binding gets their
            # parameters under its own, as when invoked directly.
            owner, name = split_path(step.path)
            caller = step.caller or req.action.namespace.split("/", 1)[0]
            try:
                action = await resolve_action(self.store, caller, owner, name)
            except ResolutionError as exc:
                unresolved = failures.forbidden if exc.reason is Unresolved.FORBIDDEN \
                    else failures.missing
                progress.fail(StatusCode.APPLICATION_ERROR, unresolved(step.path))
                return False
            try:
                payload = step.payload if step.merged else build_payload(
                    action.doc, step.payload, base=action.base)
            except ParametersNotAllowed:
                progress.fail(StatusCode.APPLICATION_ERROR, PARAMETERS_NOT_ALLOWED)
                return False
            request = build_request(
                action.doc, payload, namespace=req.invoking_namespace,
                activation_id=aid, transaction_id=req.transaction_id,
                reply_to=self.waiters.queue_name, cause=req.activation_id,
                caused_by=CAUSED_BY, binding=action.binding,
            )
            request.secondary = step.secondary
            request.traceparent = req.traceparent  # its steps are the composition's trace
            record = await self._activate(request, action.doc.limits.timeout, resumed=resumed)
            if record is None:
                progress.fail(StatusCode.WHISK_ERROR, failures.lost(aid))
                return False
        progress.component_ids.append(aid)
        progress.duration += record.duration
        limits = record.annotation("limits") or {}
        progress.memory = max(progress.memory, int(limits.get("memory", 0)))
        progress.status = record.response.status_code
        progress.result = record.response.result
        return True

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
        """A resumed composition's step may still be running from the lost delivery: an
        invoker keeps answering that delivery's (dead) reply queue, so the record is also
        read now and then. Only resumed compositions pay for this."""
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
        annotations.append(KeyValue(key="path", value=action.path))
        if action.conductor:
            annotations.append(KeyValue(key=CONDUCTOR, value=True))
        annotations += [
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
