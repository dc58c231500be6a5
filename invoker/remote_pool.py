"""A remote pool: an invoker that runs nothing itself but forwards each activation placed on it
to another platform over its REST API (invoker/remote_api.py), for bursting past this
platform's own capacity while the data stays here.

It takes work as any invoker does (its own queue, heartbeats on ``ft.health``) and answers it
as any invoker does (invoker/handoff.py: the record in this platform's Redis, the reply, the
completion), so callers see one platform. Placement (initializer/placement.py) sends it work
only when every local invoker is full, never an action that may not leave
(``ActionSnapshot.may_leave``), and only of the namespaces ``FT_BURST_NAMESPACES`` lists.

The remote runs the action under its own key and namespace; the record written here carries
the remote's activation id (annotation ``remoteActivationId``) and its logs. A remote that
fails, or does not answer in time, gives the activation an explicit error, never silence;
while its API does not answer at all, the pool reports itself draining, so the initializers
stop placing work here and hand back what waits in its queue.

    FT_BURST_API_HOST=https://other:3233 FT_BURST_AUTH=uuid:key ft burst
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from bus.broker import Broker, spawn
from bus.config import Settings
from bus.ids import now_ms
from bus.models import ActivationRecord, ActivationRequest, Heartbeat, KeyValue, StatusCode
from bus.process import connections, run_process, stop_on_signals
from bus.samples import SamplePublisher
from bus.store import Store
from invoker import outcome as oc
from invoker.deliveries import Delivery, receive
from invoker.handoff import Handoff
from invoker.records import build_record
from invoker.remote_api import STATUS_BY_NAME, NotDeployed, RemoteApi, RemoteFailure

log = logging.getLogger(__name__)

REMOTE_ID = "remoteActivationId"
REMOTE_HOST = "remoteApiHost"
REMOTE_FAILED = "The remote pool failed to run the action: {why}"


class RemotePool:
    def __init__(
        self, settings: Settings, store: Store, broker: Broker, remote: RemoteApi
    ) -> None:
        self.settings = settings
        self.id = settings.invoker_id
        self.store = store
        self.broker = broker
        self.remote = remote
        self.capacity_mb = settings.user_memory_mb  # what it offers placement
        self.in_use_mb = 0
        self._room = asyncio.Condition()
        self.jobs: dict[str, ActivationRequest] = {}  # activation id -> what is forwarded
        self.remote_answers = True
        self.draining = False
        self._queue: AbstractQueue | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        samples = SamplePublisher(broker, self.id, enabled=settings.metrics_enabled)
        self.handoff = Handoff(store, broker, self.id, settings.async_retry_base_ms, samples)

    async def start(self) -> None:
        queue_name = await self.broker.declare_invoker_queue(self.id)
        self.remote_answers = await self.remote.answers()
        await self._heartbeat()
        prefetch = max(2, 2 * self.capacity_mb // 128)
        self._queue = await self.broker.consume(queue_name, self.on_message, prefetch=prefetch)
        self._ticker = asyncio.create_task(self._tick_loop())
        log.info("remote pool %s ready: %d MB on %s", self.id, self.capacity_mb,
                 self.remote.api_host)

    async def stop(self, grace_s: float = 30.0) -> None:
        """Stop taking work and let forwarded activations finish; what was not finished is
        unacked and comes back for someone else."""
        self.draining = True
        if self._queue is not None:
            await self.broker.stop_consuming(self._queue)
        running = [t for t in self._tasks if not t.done()]
        if running:
            await asyncio.wait(running, timeout=grace_s)
        if self._ticker is not None:
            self._ticker.cancel()
        await self.handoff.flush()
        await self._heartbeat()
        for task in list(self._tasks):
            task.cancel()

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        received = await receive(message, draining=self.draining)
        if received is None:
            return
        delivery, requests = received
        for req in requests:
            if req.activation_id in self.jobs:  # delivered again while forwarded: ack both
                await delivery.done()
                continue
            if message.redelivered or req.resent or req.held_by:
                existing = await self.store.get_record(req.activation_id)
                if existing is not None:
                    await self.handoff.answer_again(req, existing)
                    await delivery.done()
                    continue
            self.jobs[req.activation_id] = req
            spawn(self._forward(req, delivery), self._tasks)

    async def _forward(self, req: ActivationRequest, delivery: Delivery) -> None:
        memory = req.action.limits.memory
        async with self._room:
            await self._room.wait_for(lambda: self.in_use_mb + memory <= self.capacity_mb
                                      or self.in_use_mb == 0)
            self.in_use_mb += memory
        try:
            record = await self._run_remotely(req)
            await self.handoff.finish(req, record)
            await delivery.done()
        finally:
            self.jobs.pop(req.activation_id, None)
            async with self._room:
                self.in_use_mb -= memory
                self._room.notify_all()

    async def _run_remotely(self, req: ActivationRequest) -> ActivationRecord:
        start = now_ms()
        remote: dict[str, Any] | None = None
        try:
            code = (await self.store.get_code(req.action.code_digest)
                    if req.action.code_digest else None)
            for attempt in (1, 2):  # once more if the remote lost the deployed action
                name = await self.remote.deploy(req.action, code)
                try:
                    remote = await self.remote.invoke(
                        name, req.payload, activation_id=req.activation_id,
                        timeout_ms=req.action.limits.timeout)
                    break
                except NotDeployed:
                    if attempt == 2:
                        raise
            assert remote is not None
            outcome = _outcome(remote)
        except (RemoteFailure, OSError, TimeoutError, ValueError) as exc:
            log.warning("remote pool could not run %s: %s", req.activation_id, exc)
            outcome = oc.whisk_error(REMOTE_FAILED.format(why=exc))
        except Exception as exc:  # aiohttp's errors and anything unforeseen: still answered
            log.exception("remote pool could not run %s", req.activation_id)
            outcome = oc.whisk_error(REMOTE_FAILED.format(why=type(exc).__name__))
        record = build_record(req, outcome, start=start, end=now_ms(),
                              logs=list((remote or {}).get("logs") or []),
                              init_ms=_annotation(remote, "initTime"), invoker_id=self.id)
        record.annotations.append(KeyValue(key=REMOTE_HOST, value=self.remote.api_host))
        if remote is not None:
            record.annotations.append(KeyValue(key=REMOTE_ID, value=remote.get("activationId")))
        return record

    # -- housekeeping ------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            answers = await self.remote.answers()
            if answers != self.remote_answers:
                log.warning("remote %s %s", self.remote.api_host,
                            "answers again" if answers else "does not answer: draining")
                self.remote_answers = answers
            await self._heartbeat()

    async def _heartbeat(self) -> None:
        backlog = 0
        if self._queue is not None and not self.draining:
            with contextlib.suppress(Exception):
                backlog = await self.broker.backlog(self._queue.name)
        running = len(self.jobs)
        beat = Heartbeat(
            invoker_id=self.id, at=now_ms(), user_memory=self.capacity_mb,
            free_memory=self.capacity_mb - self.in_use_mb, busy=running, queued=0,
            work_memory=sum(r.action.limits.memory for r in self.jobs.values()),
            draining=self.draining or not self.remote_answers, held=list(self.jobs),
            backlog=backlog, remote=True, namespaces=self.settings.burst_namespaces or None,
        )
        await self.broker.publish_heartbeat(beat)


def _annotation(record: dict[str, Any] | None, key: str) -> Any:
    for kv in (record or {}).get("annotations") or []:
        if isinstance(kv, dict) and kv.get("key") == key:
            return kv.get("value")
    return None


def _outcome(remote: dict[str, Any]) -> oc.Outcome:
    """The remote record's response, as this platform's outcome."""
    response = remote["response"]
    status = STATUS_BY_NAME.get(response.get("status"))
    if status is None:
        status = StatusCode.SUCCESS if response.get("success") else StatusCode.WHISK_ERROR
    return oc.Outcome(status, response.get("result"),
                      timed_out=bool(_annotation(remote, "timeout")))


async def serve(settings: Settings) -> None:
    if not settings.burst_api_host or not settings.burst_auth:
        raise SystemExit("a remote pool needs FT_BURST_API_HOST and FT_BURST_AUTH (uuid:key)")
    stop = stop_on_signals()
    remote = RemoteApi(settings.burst_api_host, settings.burst_auth)
    try:
        async with connections(settings, f"remote pool {settings.invoker_id}") as (store, broker):
            pool = RemotePool(settings, store, broker, remote)
            await pool.start()
            await stop.wait()
            log.info("remote pool %s stopping", settings.invoker_id)
            started = time.monotonic()
            await pool.stop()
            log.info("remote pool stopped in %.1f s", time.monotonic() - started)
    finally:
        await remote.close()


def run() -> None:
    run_process(serve)
