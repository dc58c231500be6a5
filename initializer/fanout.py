"""Trigger fan-out: one fire becomes one activation per active rule, then the trigger's own
activation record (OpenWhisk's: the payload as result, one JSON log line per rule, no end).

The order is what makes redelivery harmless: rule activations are published (confirmed)
first, under ids derived from the trigger activation id and the rule, and the trigger record
is written last. A fire interrupted in between is redelivered and publishes the very same ids
again, which the invokers' first-record-wins write turns into one answer each.

Everything that fires triggers can wait, so here the namespace's throttles are back-pressure,
not failures: a rule over ``invocationsPerMinute`` or ``concurrentInvocations`` waits until the
window or a slot admits it, while its message stays unacked with its consumer (which takes no
more than its prefetch). An asynchronous rule waits at most its action's
``maxEventAgeSeconds`` from the fire; a queue feed's batch waits as long as it takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from bus.broker import ACTIVATIONS, Broker
from bus.config import Settings
from bus.events import EntityRef, TriggerDoc, TriggerFire
from bus.ids import new_transaction_id
from bus.models import ActivationRecord, ActivationResponse, StatusCode
from bus.replies import ReplyFuture, ReplyWaiters
from bus.requests import ParametersNotAllowed, async_policy, build_payload, build_request
from bus.resolution import ResolutionError, ResolvedAction, resolve_action
from bus.store import Store
from bus.throttling import Throttled, admit_when_allowed
from bus.tracing import valid_traceparent
from initializer.answers import announce

log = logging.getLogger(__name__)

# Fixed forever: changing it would give a redelivered fire new rule activation ids.
_RULE_ACTIVATION_IDS = uuid.UUID("5f0c7a4e-2b1d-4c47-9d0e-6a3f1b8e2c10")

ACTION_MISSING = "The requested resource does not exist."
PARAMETERS_NOT_ALLOWED = (
    "Request defines parameters that are not allowed (e.g., reserved properties)."
)
THROTTLED_PAST_MAX_AGE = (
    "The event waited for the namespace's throttle past its maximum age ({s} s): {reason}"
)


class TriggerNotFound(LookupError):
    pass


def rule_activation_id(trigger_activation_id: str, rule: str) -> str:
    return uuid.uuid5(_RULE_ACTIVATION_IDS, f"{trigger_activation_id}/{rule}").hex


@dataclass
class RuleActivation:
    """What one rule did with a fire: an activation id, or why there is none."""

    rule: str  # "<ns>/<rule>"
    action: str  # "<ns>/<action>"
    activation_id: str | None = None
    error: str | None = None
    timeout_ms: int = 0  # the action's time limit, for callers waiting on the reply
    reply: ReplyFuture | None = None

    def log_line(self) -> str:
        if self.error is None:
            entry: dict[str, Any] = {"statusCode": 0, "success": True,
                                     "activationId": self.activation_id}
        else:
            entry = {"statusCode": 1, "success": False, "error": self.error}
        entry |= {"rule": self.rule, "action": self.action}
        return json.dumps(entry, separators=(",", ":"))


@dataclass
class FireResult:
    activation_id: str  # the trigger's
    rules: list[RuleActivation] = field(default_factory=list)

    @property
    def activation_ids(self) -> list[str]:
        return [r.activation_id for r in self.rules if r.activation_id is not None]


class FireFanout:
    def __init__(self, store: Store, broker: Broker, settings: Settings) -> None:
        self.store = store
        self.broker = broker
        self.settings = settings

    async def fire(
        self, fire: TriggerFire, *, trigger: TriggerDoc | None = None,
        waiters: ReplyWaiters | None = None,
    ) -> FireResult:
        """Fan ``fire`` out. With ``waiters`` the rule activations are blocking requests
        answered on that reply queue, without the async retry policy (the caller retries);
        without, they are ordinary asynchronous invocations."""
        if trigger is None:
            trigger = await self.store.get_entity(
                "triggers", fire.namespace, fire.trigger, TriggerDoc)
        if trigger is None:
            raise TriggerNotFound(f"{fire.namespace}/{fire.trigger}")
        result = FireResult(fire.activation_id)
        active = [(r, link) for r, link in (trigger.rules or {}).items()
                  if link.status == "active"]
        if not active:
            return result  # OpenWhisk: no active rule, no activation (204)
        # OpenWhisk: the trigger's parameters under the fire's payload are the invoke
        # arguments, which sit over the action's (and its package's) parameters.
        args = {kv.key: kv.value for kv in trigger.parameters} | fire.payload
        if fire.headers:
            args["__ow_headers"] = dict(fire.headers)
        resolved = await asyncio.gather(
            *(self._resolve(fire.namespace, link.action) for _, link in active))
        publishes: list[asyncio.Task[None]] = []
        try:
            for (rule, link), action in zip(active, resolved, strict=True):
                outcome = RuleActivation(rule=rule,
                                         action=f"{link.action.path}/{link.action.name}")
                result.rules.append(outcome)
                if action is None:
                    outcome.error = ACTION_MISSING
                    continue
                try:
                    payload = build_payload(action.doc, args, base=action.base)
                except ParametersNotAllowed:
                    outcome.error = PARAMETERS_NOT_ALLOWED
                    continue
                aid = rule_activation_id(fire.activation_id, rule)
                max_age_s = None if waiters is not None else async_policy(
                    action.doc).max_event_age_s
                try:
                    await admit_when_allowed(
                        self.store, self.settings, fire.namespace, action.doc, aid,
                        deadline=None if max_age_s is None else fire.fired_at + max_age_s * 1000)
                except Throttled as exc:
                    outcome.error = THROTTLED_PAST_MAX_AGE.format(s=max_age_s, reason=exc)
                    continue
                outcome.activation_id = aid
                outcome.timeout_ms = action.doc.limits.timeout
                # Published now, not after the other rules: a rule waiting for a concurrency
                # slot must not wait on a slot this one holds unpublished.
                publishes.append(asyncio.create_task(
                    self._publish(fire, action, payload, outcome, waiters)))
            await asyncio.gather(*publishes)
        except BaseException:
            for task in publishes:
                task.cancel()
            await asyncio.gather(*publishes, return_exceptions=True)
            if waiters is not None:
                for aid in result.activation_ids:
                    waiters.discard(aid)
            raise
        record = self._trigger_record(fire, trigger, result)
        if await self.store.write_record(record):
            await announce(self.broker, record)
        return result

    async def _resolve(self, namespace: str, action: EntityRef) -> ResolvedAction | None:
        """The rule's action as the trigger's namespace may run it, with its package's and
        binding's parameters; None if it is gone or no longer readable."""
        try:
            return await resolve_action(self.store, namespace, action.path, action.name)
        except ResolutionError:
            return None

    async def _publish(
        self, fire: TriggerFire, action: ResolvedAction, payload: Any, outcome: RuleActivation,
        waiters: ReplyWaiters | None,
    ) -> None:
        aid = outcome.activation_id
        assert aid is not None
        request = build_request(
            action.doc, payload, namespace=fire.namespace, activation_id=aid,
            transaction_id=new_transaction_id(),
            reply_to=waiters.queue_name if waiters is not None else None,
            asynchronous=waiters is None, cause=fire.activation_id, binding=action.binding,
        )
        # The fire's HTTP request carried the trace (its headers travel with the fire).
        request.traceparent = valid_traceparent(fire.headers.get("traceparent"))
        if waiters is not None:
            outcome.reply = waiters.register(aid)
        try:
            await self.broker.publish(request, routing_key=ACTIVATIONS, message_id=aid)
        except BaseException:
            # Never published: no record will free its concurrency slot (a redelivered
            # fire takes a new one); the slot's deadline frees it if Redis fails too.
            with contextlib.suppress(Exception):
                await self.store.release_in_flight(fire.namespace, aid)
            raise

    @staticmethod
    def _trigger_record(
        fire: TriggerFire, trigger: TriggerDoc, result: FireResult
    ) -> ActivationRecord:
        return ActivationRecord(
            namespace=fire.namespace, name=fire.trigger, version=trigger.version,
            subject=fire.subject, activationId=fire.activation_id, start=fire.fired_at,
            publish=trigger.publish,
            response=ActivationResponse(status_code=StatusCode.SUCCESS, result=fire.payload),
            logs=[r.log_line() for r in result.rules],
        )
