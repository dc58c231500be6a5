"""Every message on RabbitMQ and every record in Redis, defined once.

Entity and record models use OpenWhisk's JSON field names (``activationId``, ``publish``...)
because they are served as-is by the API; bus-only messages use Python names.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

JSON = Any


class StatusCode(IntEnum):
    """OpenWhisk's ActivationResponse status codes."""

    SUCCESS = 0
    APPLICATION_ERROR = 1
    DEVELOPER_ERROR = 2
    WHISK_ERROR = 3

    @property
    def message(self) -> str:
        return _STATUS_MESSAGES[self]


_STATUS_MESSAGES = {
    StatusCode.SUCCESS: "success",
    StatusCode.APPLICATION_ERROR: "application error",
    StatusCode.DEVELOPER_ERROR: "action developer error",
    StatusCode.WHISK_ERROR: "whisk internal error",
}


class KeyValue(BaseModel):
    key: str
    value: JSON = None
    init: bool | None = None


class Limits(BaseModel):
    timeout: int = 60_000  # ms
    memory: int = 256  # MB
    logs: int = 10  # MB
    concurrency: int = 1


class ActionExec(BaseModel):
    """How an action runs. Code lives content-addressed in Redis under ``code_digest``."""

    kind: str
    code_digest: str | None = None
    code_size: int = 0
    binary: bool = False
    main: str | None = None
    # kind "sequence": fully qualified "/ns/[pkg/]name" of each component, in order.
    components: list[str] | None = None
    image: str | None = None  # kind "blackbox": the image to run (code is then optional)


class ActionDoc(BaseModel):
    """An action as stored (OpenWhisk's WhiskAction minus the code itself)."""

    namespace: str
    name: str
    version: str = "0.0.1"
    publish: bool = False
    exec: ActionExec
    parameters: list[KeyValue] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    annotations: list[KeyValue] = Field(default_factory=list)
    updated: int = 0

    def annotation(self, key: str, default: JSON = None) -> JSON:
        for kv in self.annotations:
            if kv.key == key:
                return kv.value
        return default


class NamespaceAuth(BaseModel):
    """An issued API key in clear: ``uuid:key`` authenticates as ``namespace``. Handed out once
    and registered with ``Store.put_auth``; Redis only ever holds its hash (bus/keys.py)."""

    uuid: str
    key: str
    namespace: str


class NamespaceLimits(BaseModel):
    """A namespace's own throttles; None keeps the platform default (``Settings``)."""

    invocationsPerMinute: int | None = None
    concurrentInvocations: int | None = None
    firesPerMinute: int | None = None


# ---------------------------------------------------------------------------------------------
# Messages


def container_kind(kind: str, image: str | None) -> str:
    return f"{kind}:{image}" if image else kind


class ActionSnapshot(BaseModel):
    """What an invoker needs to run an action, frozen at accept time so the invoker never
    reads the entity store on the hot path (only the code, once per digest)."""

    namespace: str
    name: str
    version: str
    kind: str
    code_digest: str | None = None  # None for sequences (no code)
    binary: bool = False
    main: str = "main"
    limits: Limits = Field(default_factory=Limits)
    init_env: dict[str, str] = Field(default_factory=dict)
    provide_api_key: bool = False
    components: list[str] | None = None  # a sequence: run by the initializer, not an invoker
    # A conductor action (OpenWhisk's annotation): run by the initializer as a composition
    # whose steps (its secondary activations) run its code on invokers.
    conductor: bool = False
    image: str | None = None  # a blackbox action's own image
    # May run on a remote pool when every local invoker is full (bus/requests.py says when not).
    may_leave: bool = True

    @property
    def container_kind(self) -> str:
        """What the pool matches containers (and stem cells) by: a blackbox runs in its
        own image, so its image is part of its kind."""
        return container_kind(self.kind, self.image)

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def key(self) -> str:
        """Identity for warm reuse: a new version (or new code) never reuses a container."""
        return f"{self.namespace}/{self.name}@{self.version}#{self.code_digest or ''}"


class AsyncPolicy(BaseModel):
    """Lambda's asynchronous invocation settings, from the action's annotations
    (``maxRetries``, ``maxEventAgeSeconds``, ``onFailure``, ``onSuccess``). Set on non-blocking
    invokes and rule-driven invocations; None means the caller handles failures itself."""

    max_retries: int = 2  # 0..2
    max_event_age_s: int = 6 * 3600  # 60 .. 21600
    on_failure: str | None = None  # "/ns/action" or "queue:<name>"
    on_success: str | None = None


class ActivationRequest(BaseModel):
    """gateway -> initializer (``ft.activations``) -> invoker (``ft.invoker.<id>``)."""

    activation_id: str
    transaction_id: str
    invoking_namespace: str
    subject: str
    action: ActionSnapshot
    payload: JSON = Field(default_factory=dict)
    blocking: bool = False
    reply_to: str | None = None
    accepted_at: int  # epoch ms, when the gateway confirmed the publish
    max_age_ms: int = 6 * 3600 * 1000  # past this without a record it is answered with an error
    attempt: int = 1
    cause: str | None = None
    policy: AsyncPolicy | None = None
    caused_by: str | None = None  # "sequence" for a sequence's components (an annotation)
    binding: str | None = None  # "ns/binding" when invoked through a binding (an annotation)
    # Already running on this invoker through the direct path: the initializer places it
    # there (so its deadline and the invoker's death are supervised) instead of choosing.
    held_by: str | None = None
    # Published again for a caller retrying with its idempotency key: an earlier copy may have
    # run already, so the invoker looks for a record first (as for a redelivery).
    resent: bool = False
    # W3C trace context (bus.tracing): from the caller's request, or the span that handed the
    # activation on; it ends up in the record's annotations.
    traceparent: str | None = None
    # One step of a conductor action's composition: its own code, placed like any action.
    secondary: bool = False

    @property
    def composition(self) -> bool:
        """Run by the initializer from start to record (a sequence, or a conductor action's
        primary activation) instead of placed on an invoker."""
        return self.action.components is not None or (
            self.action.conductor and not self.secondary)


class ActivationBatch(BaseModel):
    """gateway -> initializers (``ft.activations``) and initializer -> invoker
    (``ft.invoker.<id>``), AMQP type ``batch``: the activations sent to one place in one turn
    of the sender's event loop, in one confirmed message (one publish and one ack for all of
    them under load). Each is still placed, run and answered on its own."""

    requests: list[ActivationRequest]


class DirectAnswer(BaseModel):
    """invoker -> gateway on the direct path: the record, or None when the invoker had no
    idle warm container for the action and did not take it (the gateway then publishes it)."""

    activation_id: str
    record: ActivationRecord | None = None


class ActivationDone(BaseModel):
    """invoker -> the waiting gateway (``ft.replies.<gateway-id>``)."""

    activation_id: str
    record: ActivationRecord


class Completion(BaseModel):
    """One finished activation: its capacity is free again."""

    activation_id: str
    action_key: str
    memory: int
    status_code: StatusCode


class Completions(BaseModel):
    """invoker -> every initializer (fanout ``ft.completions``): the activations it finished
    in one turn of its event loop, in one message (under load, dozens)."""

    invoker_id: str
    completed: list[Completion]


class Heartbeat(BaseModel):
    """invoker -> every initializer (fanout ``ft.health``), every ``heartbeat_interval_s``."""

    invoker_id: str
    at: int
    user_memory: int
    free_memory: int
    busy: int
    queued: int
    # Memory of the work it holds (running and buffered): what the initializers' own in-flight
    # counts are capped at, so a missed completion cannot make it look full for long.
    work_memory: int = 0
    warm: list[str] = Field(default_factory=list)  # action keys with a warm container
    prewarmed: dict[str, int] = Field(default_factory=dict)  # "kind/memory" -> count
    draining: bool = False
    direct: str | None = None  # Unix socket of its direct path (gateways send warm work there)
    direct_memory: int = 0  # memory of the direct-path work it runs (part of work_memory)
    # Activation ids it holds (running or waiting for a container): a live invoker is still on
    # them, so their forced-completion deadlines move on (waiting is not being unresponsive).
    held: list[str] = Field(default_factory=list)
    # Activations waiting in its queue on the broker, beyond what it took: while there are
    # any, the work placed there is queued behind live work, not lost.
    backlog: int = 0
    # Its pool's containers by state ("prewarmed", "idle", "busy", ...), for dashboards.
    containers: dict[str, int] = Field(default_factory=dict)
    # A remote pool (invoker/remote_pool.py) runs nothing here: it gets work only when every
    # local invoker is full, and only of the namespaces it lists (None: any).
    remote: bool = False
    namespaces: list[str] | None = None


# ---------------------------------------------------------------------------------------------
# Activation records


class ActivationResponse(BaseModel):
    status_code: StatusCode
    result: JSON = None

    @property
    def success(self) -> bool:
        return self.status_code == StatusCode.SUCCESS

    def to_api(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "status": self.status_code.message,
            "statusCode": int(self.status_code),
            "success": self.success,
            "result": self.result,
        }
        if self.result is not None:
            out["size"] = _json_size(self.result)
        return out


class ActivationRecord(BaseModel):
    """OpenWhisk's WhiskActivation, plus where and how often it ran."""

    model_config = ConfigDict(populate_by_name=True)

    namespace: str
    name: str
    version: str
    subject: str
    activationId: str
    start: int
    end: int = 0
    publish: bool = False
    response: ActivationResponse
    logs: list[str] = Field(default_factory=list)
    annotations: list[KeyValue] = Field(default_factory=list)
    cause: str | None = None
    # Not part of OpenWhisk's JSON: kept for operators and tests.
    invoker: str | None = None
    container_start: str | None = None  # "warm", "prewarm" or "cold"
    attempts: int = 1
    # A sequence's duration is the sum of its components', not its wall-clock time.
    reported_duration: int | None = None

    @property
    def duration(self) -> int:
        if self.reported_duration is not None:
            return self.reported_duration
        return max(0, self.end - self.start) if self.end else 0

    def annotation(self, key: str, default: JSON = None) -> JSON:
        for kv in self.annotations:
            if kv.key == key:
                return kv.value
        return default

    def to_api(self, *, logs: bool = True) -> dict[str, JSON]:
        """OpenWhisk's toExtendedJson (``statusCode`` is kept out of ``response``)."""
        response = self.response.to_api()
        response.pop("statusCode")
        out: dict[str, JSON] = {
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "subject": self.subject,
            "activationId": self.activationId,
            "start": self.start,
            "publish": self.publish,
            "response": response,
            "logs": self.logs if logs else [],
            "annotations": [kv.model_dump(exclude_none=True) for kv in self.annotations],
        }
        if self.end:
            out["end"] = self.end
            out["duration"] = self.duration
        if self.cause:
            out["cause"] = self.cause
        return out

    def summary(self) -> dict[str, JSON]:
        """A list entry (OpenWhisk's activations view): top-level numeric ``statusCode``."""
        out: dict[str, JSON] = {
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
            "publish": self.publish,
            "annotations": [kv.model_dump(exclude_none=True) for kv in self.annotations],
            "activationId": self.activationId,
            "start": self.start,
            "statusCode": int(self.response.status_code),
        }
        if self.end:
            out["end"] = self.end
            out["duration"] = self.duration
        if self.cause:
            out["cause"] = self.cause
        return out


def _json_size(value: JSON) -> int:
    import json

    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


ActivationDone.model_rebuild()
DirectAnswer.model_rebuild()


class ActivationSample(BaseModel):
    """What metrics need of one finished activation: no result, no logs, no id (metric labels
    stay bounded). Built from its record by ``bus.samples``."""

    namespace: str
    initiator: str  # the subject that invoked it
    action: str  # "name" or "package/name"
    kind: str
    memory: int
    status: StatusCode
    duration_ms: int
    wait_ms: int
    init_ms: int | None = None  # set on cold and stem-cell starts, as OpenWhisk's initTime
    end: int  # epoch ms


class ActivationSamples(BaseModel):
    """Fanout ``ft.metrics``: the activations a process finished in one turn of its loop;
    every gateway counts them into the cluster's activation metrics and its dashboard."""

    source: str  # invoker or initializer id
    samples: list[ActivationSample]


# ---------------------------------------------------------------------------------------------
# Packages


class PackageBinding(BaseModel):
    """What a binding points at: OpenWhisk's ``{"namespace": ..., "name": ...}``."""

    namespace: str
    name: str

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.name}"


class PackageDoc(BaseModel):
    """A package or, with ``binding`` set, a package binding (OpenWhisk's WhiskPackage).
    Its actions are stored as actions in the namespace ``<namespace>/<name>``."""

    namespace: str
    name: str
    version: str = "0.0.1"
    publish: bool = False
    binding: PackageBinding | None = None
    parameters: list[KeyValue] = Field(default_factory=list)
    annotations: list[KeyValue] = Field(default_factory=list)
    updated: int = 0

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.name}"
