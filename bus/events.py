"""Triggers, rules and feeds: their stored documents and the messages that fire them.

A trigger fire travels as a ``TriggerFire`` on the topic exchange ``ft.events`` with routing
key ``<namespace>.<trigger>``; any AMQP producer may publish there too (JSON or msgpack body,
the payload itself). Initializers consume the durable queue ``ft.fires`` bound to it, fan each
fire out to the trigger's active rules, and write the trigger's activation record.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from bus.models import KeyValue

FIRES_QUEUE = "ft.fires"
ACTIVATION_EVENTS = "ft.activation-events"  # topic: <namespace>.<action>.<status>
FEEDS_EXCHANGE = "ft.feeds"  # fanout of FeedChanged
DESTINATIONS_QUEUE = "ft.destinations"


class EntityRef(BaseModel):
    """OpenWhisk's ``{"path": "guest", "name": "hello"}``."""

    path: str
    name: str

    @property
    def fqn(self) -> str:
        return f"/{self.path}/{self.name}"


class RuleLink(BaseModel):
    """A rule's entry inside its trigger document (OpenWhisk keeps status there)."""

    action: EntityRef
    status: Literal["active", "inactive"] = "active"


class TriggerDoc(BaseModel):
    namespace: str
    name: str
    version: str = "0.0.1"
    publish: bool = False
    parameters: list[KeyValue] = Field(default_factory=list)
    limits: dict[str, Any] = Field(default_factory=dict)
    annotations: list[KeyValue] = Field(default_factory=list)
    updated: int = 0
    rules: dict[str, RuleLink] | None = None  # "<ns>/<rule>" -> link; None until ever linked

    def annotation(self, key: str, default: Any = None) -> Any:
        return next((kv.value for kv in self.annotations if kv.key == key), default)


class RuleDoc(BaseModel):
    namespace: str
    name: str
    version: str = "0.0.1"
    publish: bool = False
    annotations: list[KeyValue] = Field(default_factory=list)
    trigger: EntityRef
    action: EntityRef
    updated: int = 0


class TriggerFire(BaseModel):
    """A fire accepted by the gateway (native producers publish bare payloads instead)."""

    activation_id: str
    namespace: str
    trigger: str
    subject: str
    payload: dict[str, Any] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    fired_at: int  # epoch ms


FeedKind = Literal["queue", "alarm", "interval", "once"]
# What a fired `once` alarm removes: nothing, its trigger's rules, or those and the trigger.
DeleteAfterFire = Literal["false", "rules", "true"]


class FeedDoc(BaseModel):
    """A trigger's feed, run by whichever initializer holds its lease.

    queue:    consume ``queue`` (batches of ``batch_size`` within ``max_batching_window_ms``,
              ``max_concurrency`` batches in flight), ack a message only after the activations
              it caused succeeded, retry failures up to ``max_retries`` with backoff, then move
              them to ``dead_letter_queue`` (default ``<queue>.dlq``).
    alarm:    fire on a ``cron`` schedule (UTC); interval: every ``minutes``; once: at
              ``date``, then remove what ``delete_after_fire`` says.
    """

    namespace: str
    trigger: str
    kind: FeedKind
    params: dict[str, Any] = Field(default_factory=dict)  # the feed's own parameters
    queue: str | None = None
    batch_size: int = 1
    max_batching_window_ms: int = 0
    max_concurrency: int = 1
    max_retries: int = 3
    dead_letter_queue: str | None = None
    cron: str | None = None
    minutes: float | None = None
    trigger_payload: dict[str, Any] = Field(default_factory=dict)
    start_date: int | None = None  # epoch ms
    stop_date: int | None = None
    date: int | None = None  # epoch ms: when a `once` alarm fires
    delete_after_fire: DeleteAfterFire = "false"
    created: int = 0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.trigger}"

    @property
    def dead_letters(self) -> str:
        """Where a queue feed's messages go once their retries are spent."""
        return self.dead_letter_queue or f"{self.queue}.dlq"


class FeedChanged(BaseModel):
    """Fanout ``ft.feeds``: a feed was created, updated or deleted; initializers re-read it."""

    key: str  # "<namespace>/<trigger>"
    deleted: bool = False


class Destination(BaseModel):
    """invoker -> ``ft.destinations`` (durable): deliver ``record`` to ``target``."""

    target: str  # "/ns/action" or "queue:<name>"
    namespace: str  # whose destination it is (the action's invoking namespace)
    subject: str
    record: DestinationRecord


class DestinationRecord(BaseModel):
    """What an on-failure / on-success destination receives (as action params or a JSON
    queue message), like Lambda's invocation record."""

    version: str = "1.0"
    timestamp: int
    activation_id: str
    action: str  # /ns/name
    condition: Literal["Success", "RetriesExhausted", "EventAgeExceeded", "Error"]
    attempts: int
    request_payload: Any = None
    response: dict[str, Any]  # {"status", "statusCode", "success", "result"}


Destination.model_rebuild()
