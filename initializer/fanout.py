"""Trigger fan-out: one fire becomes one activation per active rule, then the trigger's own
activation record (OpenWhisk's: the payload as result, one JSON log line per rule, no end).

The order is what makes redelivery harmless: rule activations are published (confirmed)
first, under ids derived from the trigger activation id and the rule, and the trigger record
is written last. A fire interrupted in between is redelivered and publishes the very same ids
again, which the invokers' first-record-wins write turns into one answer each.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from bus.broker import ACTIVATIONS, Broker
from bus.events import TriggerDoc, TriggerFire
from bus.ids import new_transaction_id
from bus.models import ActionDoc, ActivationRecord, ActivationResponse, StatusCode
from bus.replies import ReplyFuture, ReplyWaiters
from bus.requests import ParametersNotAllowed, build_payload, build_request
from bus.store import Store

log = logging.getLogger(__name__)

# Fixed forever: changing it would give a redelivered fire new rule activation ids.
_RULE_ACTIVATION_IDS = uuid.UUID("5f0c7a4e-2b1d-4c47-9d0e-6a3f1b8e2c10")

ACTION_MISSING = "The requested resource does not exist."
PARAMETERS_NOT_ALLOWED = (
    "Request defines parameters that are not allowed (e.g., reserved properties)."
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
    def __init__(self, store: Store, broker: Broker) -> None:
        self.store = store
        self.broker = broker

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
        base = {kv.key: kv.value for kv in trigger.parameters}
        if fire.headers:
            base["__ow_headers"] = dict(fire.headers)
        actions = await asyncio.gather(
            *(self.store.get_action(link.action.path, link.action.name) for _, link in active))
        publishes = []
        for (rule, link), doc in zip(active, actions, strict=True):
            outcome = RuleActivation(rule=rule, action=f"{link.action.path}/{link.action.name}")
            result.rules.append(outcome)
            if doc is None:
                outcome.error = ACTION_MISSING
                continue
            try:
                payload = build_payload(doc, fire.payload, base=base)
            except ParametersNotAllowed:
                outcome.error = PARAMETERS_NOT_ALLOWED
                continue
            outcome.activation_id = rule_activation_id(fire.activation_id, rule)
            outcome.timeout_ms = doc.limits.timeout
            publishes.append(self._publish(fire, doc, payload, outcome, waiters))
        try:
            await asyncio.gather(*publishes)
        except BaseException:
            if waiters is not None:
                for aid in result.activation_ids:
                    waiters.discard(aid)
            raise
        await self.store.write_record(self._trigger_record(fire, trigger, result))
        return result

    async def _publish(
        self, fire: TriggerFire, doc: ActionDoc, payload: Any, outcome: RuleActivation,
        waiters: ReplyWaiters | None,
    ) -> None:
        aid = outcome.activation_id
        assert aid is not None
        request = build_request(
            doc, payload, namespace=fire.namespace, activation_id=aid,
            transaction_id=new_transaction_id(),
            reply_to=waiters.queue_name if waiters is not None else None,
            asynchronous=waiters is None, cause=fire.activation_id,
        )
        if waiters is not None:
            outcome.reply = waiters.register(aid)
        await self.broker.publish(request, routing_key=ACTIVATIONS, message_id=aid)

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
