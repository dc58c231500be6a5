"""The invoker's driver: feeds the container pool events, executes its commands against a
container backend and the action proxies, and hands every result on (record in Redis, reply
to the waiting gateway, completion to the initializers) before acking the request."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from prometheus_client import CollectorRegistry

from bus.broker import ACTIVATIONS, Broker, spawn
from bus.config import Settings
from bus.ids import now_ms
from bus.models import (
    ActivationRecord,
    ActivationRequest,
    Heartbeat,
)
from bus.process import connections, run_process, stop_on_signals
from bus.samples import STATUS_LABELS, SamplePublisher
from bus.store import Store
from bus.telemetry import new_registry, serve_metrics
from bus.tracing import Span, Tracer
from invoker import outcome as oc
from invoker.backends import ContainerBackend, ContainerHandle, ImageUnavailable
from invoker.deliveries import Delivery, receive
from invoker.direct import DirectServer
from invoker.handoff import Handoff
from invoker.logs import collect
from invoker.metrics import InvokerMetrics, kind_label
from invoker.outcome import Outcome
from invoker.pool import ContainerPool, ContainerState, Job, Remove, Run, StartStemCell
from invoker.proxy_client import ProxyClient, ProxyConnectionError, ResponseTooLarge
from invoker.records import build_record, init_body, run_body

log = logging.getLogger(__name__)

PROXY_START_TIMEOUT_S = 30.0
# A minted key outlives the action's limits (init and run each get the full timeout) by this
# much; it is revoked as soon as the run ends, so the TTL only matters if that revoke is lost.
MINTED_KEY_SLACK_MS = 10_000
CODE_CACHE_ENTRIES = 256


@dataclass
class JobContext:
    request: ActivationRequest
    # None for the direct path until (if ever) its held copy arrives through the queue.
    message: Delivery | None
    received_at: float = field(default_factory=time.monotonic)
    answer: asyncio.Future[ActivationRecord] | None = None  # the direct caller's


class Invoker:
    def __init__(
        self, settings: Settings, store: Store, broker: Broker, backend: ContainerBackend,
        registry: CollectorRegistry | None = None, tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.id = settings.invoker_id
        self.store = store
        self.broker = broker
        self.backend = backend
        counter = itertools.count()
        self.pool = ContainerPool(
            settings.user_memory_mb, settings.stem_cells, settings.idle_container_ttl_s,
            new_id=lambda: f"c{next(counter)}",
            stem_cell_reclaim_after=settings.stem_cell_reclaim_s,
        )
        self.handles: dict[str, ContainerHandle] = {}
        self.clients: dict[str, ProxyClient] = {}
        self.jobs: dict[str, JobContext] = {}
        self._code: OrderedDict[str, str] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._consumer_tag: str | None = None
        self._queue: AbstractQueue | None = None
        self._stem_cell_errors: dict[str, float] = {}
        self.draining = False
        self.tracer = tracer or Tracer.off("invoker")
        self.registry = registry or new_registry()
        self.metrics = InvokerMetrics(self.registry, self.pool)
        samples = SamplePublisher(broker, self.id, enabled=settings.metrics_enabled)
        self.handoff = Handoff(store, broker, self.id, settings.async_retry_base_ms, samples)
        self.direct: DirectServer | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        removed = await self.backend.remove_leftovers()
        if removed:
            log.info("removed %d containers left by a previous run", removed)
        self.backend.watch(self._container_died)
        queue_name = await self.broker.declare_invoker_queue(self.id)
        self.apply(self.pool.start(time.monotonic()))
        if self.settings.direct_path:
            socket_path = self.settings.work_dir / f"direct-{self.id}.sock"
            self.direct = DirectServer(self.run_direct, socket_path)
            await self.direct.start()
        await self._heartbeat()
        # Enough unacked messages to fill every memory slot once more; the rest waits in the
        # broker, where another invoker can get it if this one dies.
        prefetch = max(2, 2 * self.settings.user_memory_mb // 128)
        self._queue = await self.broker.consume(queue_name, self.on_message, prefetch=prefetch)
        self._ticker = asyncio.create_task(self._tick_loop())
        log.info("invoker %s ready (%d MB)", self.id, self.settings.user_memory_mb)

    async def stop(self, grace_s: float = 30.0) -> None:
        """Stop taking work, let running activations finish, hand buffered ones back."""
        self.draining = True
        if self._queue is not None:
            await self.broker.stop_consuming(self._queue)
        if self.direct is not None:
            await self.direct.stop_accepting()
        for job in self.pool.drain():
            ctx = self.jobs.pop(job.activation_id, None)
            if ctx is not None and ctx.message is not None:
                await self._hand_back(ctx.request, ctx.message)
        running = [t for t in self._tasks if not t.done()]
        if running:
            await asyncio.wait(running, timeout=grace_s)
        for ctx in list(self.jobs.values()):
            # A direct activation without a held copy goes back to its gateway instead,
            # when the connection closes.
            if ctx.message is not None:
                await self._hand_back(ctx.request, ctx.message)
        if self.direct is not None:
            await self.direct.close()
        if self._ticker is not None:
            self._ticker.cancel()
        await self.handoff.flush()
        await self._heartbeat()
        await asyncio.gather(*(self._destroy(cid) for cid in list(self.handles)))
        for task in list(self._tasks):
            task.cancel()

    # -- intake ------------------------------------------------------------------------------

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        received = await receive(message, draining=self.draining)
        if received is None:
            return
        delivery, requests = received
        for req in requests:
            await self._take(req, delivery, again=message.redelivered)

    async def _take(self, req: ActivationRequest, delivery: Delivery, *, again: bool) -> None:
        aid = req.activation_id
        if aid in self.jobs:
            # Delivered again while still running here (a redelivery, a retried caller's
            # copy, the held copy of a direct activation): the new delivery is the one to
            # ack, and the answer goes to whoever waits now.
            running = self.jobs[aid]
            if running.message is not None:
                await running.message.done()
            running.message = delivery
            if req.reply_to:
                running.request = running.request.model_copy(update={"reply_to": req.reply_to})
            return
        if again or req.resent or req.held_by:
            existing = await self.store.get_record(aid)
            if existing is not None:
                # It ran before a crash lost the ack: answer again with the same record.
                await self.handoff.answer_again(req, existing)
                await delivery.done()
                return
        action = req.action
        if action.limits.memory > self.settings.user_memory_mb:
            await self._complete(JobContext(req, delivery), build_record(
                req, oc.whisk_error(oc.PROVISION_FAILED), start=now_ms(), end=now_ms(), logs=[],
                init_ms=None, invoker_id=self.id))
            return
        if self.draining:  # stop() may have begun while we awaited Redis above
            await self._hand_back(req, delivery)
            return
        self.jobs[aid] = JobContext(req, delivery)
        job = Job(aid, action.key, req.invoking_namespace, action.container_kind,
                  action.limits.memory)
        self.apply(self.pool.submit(job, time.monotonic()))

    async def _hand_back(self, req: ActivationRequest, delivery: Delivery) -> None:
        """Stopping: work not started here goes back for another invoker. A message that
        carries nothing else is simply returned to the queue; one of a batch is published
        again on its own (then its share of the batch is done)."""
        if delivery.alone:
            await delivery.give_back()
            return
        try:
            await self.broker.publish(req, routing_key=ACTIVATIONS, message_id=req.activation_id)
        except Exception as exc:  # unacked, the whole batch comes back when we are gone
            log.warning("could not hand %s back: %s", req.activation_id, exc)
            return
        await delivery.done()

    async def run_direct(self, req: ActivationRequest) -> ActivationRecord | None:
        """The direct path: run ``req`` at once on an idle warm container and return its
        (stored) record, or None without taking it. Only blocking requests come this way, so
        there is no retry policy; its record is written before the answer, as any other."""
        aid = req.activation_id
        action = req.action
        if self.draining or aid in self.jobs or action.limits.memory > self.settings.user_memory_mb:
            return None
        job = Job(aid, action.key, req.invoking_namespace, action.container_kind,
                  action.limits.memory)
        run = self.pool.submit_warm(job, time.monotonic())
        self.metrics.direct.labels("declined" if run is None else "taken").inc()
        if run is None:
            return None
        answer: asyncio.Future[ActivationRecord] = asyncio.get_running_loop().create_future()
        self.jobs[aid] = JobContext(req, None, answer=answer)
        self.apply([run])
        return await answer

    def apply(self, commands: list[StartStemCell | Run | Remove]) -> None:
        for command in commands:
            match command:
                case Run():
                    spawn(self._run(command), self._tasks)
                case StartStemCell():
                    spawn(self._start_stem_cell(command), self._tasks)
                case Remove():
                    spawn(self._remove(command.container_id), self._tasks)

    # -- containers --------------------------------------------------------------------------

    async def _create(self, container_id: str, kind: str, memory: int) -> ProxyClient:
        began = time.monotonic()
        handle = await self.backend.create(container_id, kind, memory)
        self.handles[container_id] = handle
        client = self.clients[container_id] = ProxyClient(handle.socket_path)
        await client.connect(PROXY_START_TIMEOUT_S)
        self.metrics.container_create.labels(kind_label(kind)).observe(time.monotonic() - began)
        return client

    async def _start_stem_cell(self, cmd: StartStemCell) -> None:
        try:
            await self._create(cmd.container_id, cmd.kind, cmd.memory)
        except Exception as exc:
            await self._destroy(cmd.container_id)
            last = self._stem_cell_errors.get(cmd.kind, 0.0)
            if time.monotonic() - last > 60:
                log.error("cannot start a %s stem cell: %s", cmd.kind, exc)
                self._stem_cell_errors[cmd.kind] = time.monotonic()
            self.apply(self.pool.container_failed_to_start(cmd.container_id, time.monotonic()))
            return
        self.apply(self.pool.container_started(cmd.container_id, time.monotonic()))

    async def _destroy(self, container_id: str) -> None:
        client = self.clients.pop(container_id, None)
        if client is not None:
            client.close()
        handle = self.handles.pop(container_id, None)
        if handle is not None:
            try:
                await self.backend.destroy(handle)
            except Exception:
                log.exception("could not remove container %s", container_id)

    def _container_died(self, engine_id: str) -> None:
        """A container died without our asking (``docker kill``, an engine restart). A busy
        one is the running job's business: its proxy call fails (or, still starting, its wait
        for the proxy ends), which ends the job with an error record and removes the
        container. An idle or prewarmed one is forgotten and removed here, so no job is ever
        sent to it, and a missing stem cell is started."""
        cid = next((c for c, h in self.handles.items() if h.engine_id == engine_id), None)
        container = self.pool.containers.get(cid) if cid is not None else None
        if cid is None or container is None:
            return
        if container.state not in (ContainerState.IDLE, ContainerState.PREWARMED):
            if (client := self.clients.get(cid)) is not None:
                client.abandon()  # one still starting: no waiting for its proxy to listen
            return
        log.warning("container %s (%s) died while %s", cid, engine_id[:12],
                    container.state.value)
        self.apply(self.pool.container_lost(cid, time.monotonic()))
        spawn(self._destroy(cid), self._tasks)

    async def _remove(self, container_id: str) -> None:
        await self._destroy(container_id)
        self.apply(self.pool.container_removed(container_id, time.monotonic()))

    # -- running -----------------------------------------------------------------------------

    async def _code_for(self, digest: str | None) -> str | None:
        if digest is None:
            return None
        code = self._code.get(digest)
        if code is None:
            code = await self.store.get_code(digest)
            if code is None:
                return None
            self._code[digest] = code
            if len(self._code) > CODE_CACHE_ENTRIES:
                self._code.popitem(last=False)
        else:
            self._code.move_to_end(digest)
        return code

    async def _run(self, cmd: Run) -> None:
        ctx = self.jobs[cmd.job.activation_id]
        req = ctx.request
        self.metrics.container_starts.labels(cmd.start, req.action.kind).inc()
        attributes = {"faas.invocation_id": req.activation_id,
                      "faas.invoked_name": f"/{req.action.path}", "ft.container": cmd.start}
        with self.tracer.span("activation", req.traceparent, kind="consumer",
                              attributes=attributes) as span:
            await self._run_traced(cmd, ctx, span)

    async def _run_traced(self, cmd: Run, ctx: JobContext, span: Span) -> None:
        cid = cmd.container_id
        if cmd.start == "cold":
            with self.tracer.span("container create", span.traceparent):
                if not await self._cold_start(cid, ctx):
                    span.error("the container could not be made")
                    return
        released = False
        try:
            record, reusable = await self._execute(cmd, ctx.request, span.traceparent)
            if not record.response.success:
                span.error(record.response.status_code.message)
            # Release before handing the answer on: a caller whose next request follows the
            # reply at once then finds this container warm instead of starting another.
            self.apply(self.pool.job_finished(cid, time.monotonic(), reusable))
            released = True
            await self._complete(ctx, record)
        finally:
            if not released:
                self.apply(self.pool.job_finished(cid, time.monotonic(), False))

    async def _cold_start(self, cid: str, ctx: JobContext) -> bool:
        """Create the container for a cold start; on failure answer with a whisk error."""
        req = ctx.request
        try:
            await self._create(cid, req.action.container_kind, req.action.limits.memory)
            return True
        except Exception as exc:
            if isinstance(exc, ImageUnavailable):  # the action's fault, not the platform's
                outcome = oc.developer_error(oc.IMAGE_UNAVAILABLE.format(image=exc.image))
            else:
                log.exception("cold start of %s failed", req.action.path)
                outcome = oc.whisk_error(oc.PROVISION_FAILED)
            await self._destroy(cid)
            self.apply(self.pool.container_failed_to_start(cid, time.monotonic()))
            now = now_ms()
            await self._complete(ctx, build_record(
                req, outcome, start=now, end=now, logs=[], init_ms=None, invoker_id=self.id))
            return False

    async def _execute(
        self, cmd: Run, req: ActivationRequest, traceparent: str | None
    ) -> tuple[ActivationRecord, bool]:
        """/init (unless warm) and /run; the record and whether the container may be reused.
        Each call to the container is a span, child of ``traceparent``."""
        cid = cmd.container_id
        timeout_ms = req.action.limits.timeout
        client = self.clients[cid]
        start = now_ms()
        init_ms: int | None = None
        outcome: Outcome | None = None
        logs_expected = True
        key_uuid, api_key = await self._mint_key(req)
        try:
            if cmd.start != "warm":
                with self.tracer.span("/init", traceparent, kind="client"):
                    outcome, logs_expected = await self._init(
                        client, req, cid, start + timeout_ms, api_key)
                init_ms = now_ms() - start
            if outcome is None:
                with self.tracer.span("/run", traceparent, kind="client"):
                    outcome, logs_expected = await self._invoke(
                        client, req, cid, timeout_ms, api_key)
        finally:
            await self._revoke_key(key_uuid)
        end = now_ms()
        handle = self.handles.get(cid)
        logs = await collect(
            handle.log_path(req.activation_id), req.action.limits.logs,
            expect_file=logs_expected,
        ) if handle is not None else []
        record = build_record(
            req, outcome, start=start, end=end, logs=logs, init_ms=init_ms,
            invoker_id=self.id, container_start=cmd.start)
        return record, outcome.container_reusable

    async def _mint_key(self, req: ActivationRequest) -> tuple[str | None, str | None]:
        """``(uuid, uuid:key)`` of a key for this activation alone, if the action asked for
        ``__OW_API_KEY``: no caller's key is ever handed over (the platform only holds hashes),
        and a key that leaks from the container dies with the run."""
        if not req.action.provide_api_key:
            return None, None
        ttl_ms = 2 * req.action.limits.timeout + MINTED_KEY_SLACK_MS
        return await self.store.keys.mint(req.invoking_namespace, req.activation_id, ttl_ms)

    async def _revoke_key(self, key_uuid: str | None) -> None:
        if key_uuid is None:
            return
        try:
            await self.store.keys.revoke(key_uuid)
        except Exception as exc:  # its TTL ends it soon anyway
            log.warning("could not revoke the key minted for an activation: %s", exc)

    async def _init(
        self, client: ProxyClient, req: ActivationRequest, cid: str, deadline: int,
        api_key: str | None,
    ) -> tuple[Outcome | None, bool]:
        """None when the action initialized; else the failure and whether logs were written."""
        code = await self._code_for(req.action.code_digest)
        if code is None and req.action.code_digest is not None:
            return Outcome(oc.StatusCode.APPLICATION_ERROR,
                           {"error": "Action could not be found or may have been deleted."}), True
        timeout_ms = req.action.limits.timeout
        try:
            status, body = await client.post(
                "/init", init_body(req, code, deadline, api_key), timeout_ms / 1000)
        except TimeoutError:
            return oc.developer_error(
                oc.INIT_TIMEOUT_MESSAGE.format(ms=timeout_ms), timed_out=True), False
        except ProxyConnectionError:
            return await self._crashed(cid, oc.INIT_EXITED), False
        if status != 200:
            return oc.init_failure(status, body), True
        return None, True

    async def _invoke(
        self, client: ProxyClient, req: ActivationRequest, cid: str, timeout_ms: int,
        api_key: str | None,
    ) -> tuple[Outcome, bool]:
        deadline = now_ms() + timeout_ms
        try:
            status, body = await client.post(
                "/run", run_body(req, deadline, api_key), timeout_ms / 1000,
                max_body=oc.MAX_RESULT_BYTES + oc.RESULT_SLACK_BYTES)
        except ResponseTooLarge as exc:
            return oc.result_too_large(exc.length, exc.head), True
        except TimeoutError:
            message = oc.TIMEOUT_MESSAGE.format(ms=timeout_ms)
            return oc.developer_error(message, timed_out=True), False
        except ProxyConnectionError:
            return await self._crashed(cid, oc.RUN_EXITED), False
        return oc.run_outcome(status, body), True

    async def _crashed(self, cid: str, message: str) -> Outcome:
        handle = self.handles.get(cid)
        if handle is not None and await self.backend.was_oom_killed(handle):
            return oc.developer_error(oc.OUT_OF_MEMORY)
        return oc.developer_error(message)

    # -- handing results on ------------------------------------------------------------------

    async def _complete(self, ctx: JobContext, record: ActivationRecord) -> None:
        aid = ctx.request.activation_id
        self.metrics.activations.labels(STATUS_LABELS[record.response.status_code]).inc()
        if ctx.answer is None:
            assert ctx.message is not None
            await self.handoff.finish(ctx.request, record)
            await ctx.message.done()
            self.jobs.pop(aid, None)
            return
        record = await self.handoff.store_record(record)
        # From here on a held copy arriving finds the record (see on_message), not this job.
        held = ctx.message
        self.jobs.pop(aid, None)
        if not ctx.answer.done():
            ctx.answer.set_result(record)
        if held is None:
            self.handoff.announce(record)
        else:
            # The initializer supervises it and the gateway waits on its reply queue.
            await self.handoff.answer_again(ctx.request, record)
            await held.done()

    # -- housekeeping ------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            try:
                self.apply(self.pool.tick(time.monotonic()))
                await self._heartbeat()
            except Exception:
                log.exception("housekeeping failed")

    async def _heartbeat(self) -> None:
        backlog = 0
        if self._queue is not None and not self.draining:
            with contextlib.suppress(Exception):
                backlog = await self.broker.backlog(self._queue.name)
        beat = Heartbeat(
            invoker_id=self.id, at=now_ms(), user_memory=self.settings.user_memory_mb,
            free_memory=self.pool.free_memory, busy=self.pool.busy_count,
            work_memory=self.pool.work_memory,
            queued=self.pool.queued_count, warm=self.pool.warm_keys(),
            prewarmed=self.pool.prewarm_counts(), draining=self.draining, held=list(self.jobs),
            direct=str(self.direct.path) if self.direct is not None and not self.draining else None,
            direct_memory=sum(c.request.action.limits.memory for c in self.jobs.values()
                              if c.answer is not None and c.message is None),
            backlog=backlog, containers=self.pool.state_counts(),
        )
        await self.broker.publish_heartbeat(beat)


def make_backend(settings: Settings) -> ContainerBackend:
    if settings.container_backend == "sandbox":
        from invoker.backends.sandbox import SandboxBackend

        return SandboxBackend(settings)
    if settings.container_backend != "docker":
        raise ValueError(f"unknown FT_CONTAINER_BACKEND {settings.container_backend!r} "
                         "(docker or sandbox)")
    from invoker.backends.docker import DockerBackend

    return DockerBackend(settings)


async def serve(settings: Settings) -> None:
    stop = stop_on_signals()
    backend = make_backend(settings)
    tracer = Tracer("invoker")
    async with connections(settings, f"invoker {settings.invoker_id}") as (store, broker):
        invoker = Invoker(settings, store, broker, backend, tracer=tracer)
        await invoker.start()
        async with serve_metrics(settings, invoker.registry):
            await stop.wait()
        log.info("invoker %s stopping", settings.invoker_id)
        await invoker.stop()
        await backend.close()
    tracer.shutdown()


def run() -> None:
    run_process(serve)
