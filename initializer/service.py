"""The initializer: takes accepted activations off ``ft.activations`` and forwards each to an
invoker chosen from heartbeats. A request is acked only after the invoker's queue confirmed
it, so a crash here means redelivery to another initializer, never a lost activation.

It also turns events into activations: trigger fires (``ft.fires``), queue and alarm feeds,
and on-success/on-failure destinations (``ft.destinations``)."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from bus.broker import (
    ACTIVATIONS,
    COMPLETIONS,
    HEALTH,
    Broker,
    Unroutable,
    activation_requests_or_dead_letter,
    invoker_queue,
    settle,
    spawn,
)
from bus.coalesce import Coalescer
from bus.codec import unpack
from bus.config import Settings
from bus.events import DESTINATIONS_QUEUE, FIRES_QUEUE
from bus.ids import now_ms
from bus.models import (
    ActivationRequest,
    Completions,
    Heartbeat,
)
from bus.process import connections, run_process, stop_on_signals
from bus.replies import ReplyWaiters
from bus.samples import SamplePublisher
from bus.store import Store
from bus.telemetry import new_registry, serve_metrics
from bus.tracing import Tracer
from initializer.alarms import AlarmScheduler
from initializer.answers import answer_with_error
from initializer.compositions import CompositionRunner
from initializer.conductors import conduct
from initializer.destinations import DestinationConsumer
from initializer.fanout import FireFanout
from initializer.feeds import FeedManager
from initializer.fires import FireConsumer
from initializer.metrics import InitializerMetrics
from initializer.placement import choose_invoker
from initializer.registry import InvokerRegistry
from initializer.sequences import run_sequence
from initializer.supervision import Supervisor

log = logging.getLogger(__name__)

NO_INVOKER_WAIT_S = 1.0
INVOKER_BATCH = 16  # an invoker acks a batch when its last activation is done
EXPIRED = "The activation was not started within its maximum age ({s} s): no invoker had room."


def new_initializer_id() -> str:
    """Unique per process (feed leases and the reply queue are this process's); the pid in
    it tells operators (and tests) which process holds a feed."""
    return f"initializer-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Initializer:
    def __init__(
        self, settings: Settings, store: Store, broker: Broker, tracer: Tracer | None = None
    ) -> None:
        self.id = new_initializer_id()
        self.tracer = tracer or Tracer.off("initializer")
        self.settings = settings
        self.store = store
        self.broker = broker
        self.registry = InvokerRegistry(
            settings.invoker_dead_after_s, deadline_margin_s=settings.activation_deadline_margin_s,
            window_s=settings.invoker_health_window_s)
        self.metrics_registry = new_registry()
        self.metrics = InitializerMetrics(self.metrics_registry, self.registry)
        self.samples = SamplePublisher(broker, self.id, enabled=settings.metrics_enabled)
        self.supervisor = Supervisor(self.id, self.registry, store, broker,
                                     settings.drain_lease_ttl_ms, samples=self.samples,
                                     metrics=self.metrics)
        self.waiters = ReplyWaiters(broker, self.id)
        self.fanout = FireFanout(store, broker, settings)
        self.feeds = FeedManager(self.id, store=store, broker=broker, fanout=self.fanout,
                                 waiters=self.waiters, settings=settings)
        self.alarms = AlarmScheduler(lambda: self.feeds.docs.values(), store=store,
                                     fanout=self.fanout)
        self.compositions = CompositionRunner(store, broker, self.waiters, self.samples)
        self._compositions_running: set[asyncio.Task[None]] = set()
        self._activations: AbstractQueue | None = None
        self._event_queues: list[AbstractQueue] = []
        self._outboxes: dict[str, Coalescer[ActivationRequest]] = {}
        self._feed_lag: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.broker.connection.reconnect_callbacks.add(
            lambda *_: self.registry.hearing_restored())
        await self.broker.consume(None, self.on_heartbeat, prefetch=256, bind_to=HEALTH,
                                  auto_ack=True)
        await self.broker.consume(None, self.on_completion, prefetch=256, bind_to=COMPLETIONS,
                                  auto_ack=True)
        # Bounded: messages beyond this wait in the broker, where other initializers see them
        # (a message may be a gateway's batch of up to 32).
        self._activations = await self.broker.consume(
            ACTIVATIONS, self.on_activation, prefetch=64)
        await self.waiters.start()
        fires = FireConsumer(self.store, self.fanout)
        destinations = DestinationConsumer(self.store, self.broker)
        self._event_queues = [
            await self.broker.consume(FIRES_QUEUE, fires.on_message, prefetch=64),
            await self.broker.consume(DESTINATIONS_QUEUE, destinations.on_message, prefetch=64),
        ]
        await self.feeds.start()
        self.alarms.start()
        self.supervisor.start()
        self._feed_lag = asyncio.create_task(self.metrics.follow_feeds(self.feeds, self.broker))
        log.info("initializer %s ready", self.id)

    async def stop(self) -> None:
        if self._feed_lag is not None:
            self._feed_lag.cancel()
        await self.alarms.stop()
        await self.supervisor.stop()
        for queue in self._event_queues:
            await self.broker.stop_consuming(queue)
        # Feed batches in flight still need their rule activations placed: keep placing
        # until they finished, then stop taking activations.
        await self.feeds.stop()
        if self._activations is not None:
            await self.broker.stop_consuming(self._activations)
        await self.waiters.close()
        await self.samples.flush()

    async def on_heartbeat(self, message: AbstractIncomingMessage) -> None:
        await self.registry.heartbeat(unpack(message.body, Heartbeat))

    async def on_completion(self, message: AbstractIncomingMessage) -> None:
        done = unpack(message.body, Completions)
        for completion in done.completed:
            await self.registry.completed(done.invoker_id, completion.activation_id,
                                          completion.status_code)

    async def on_activation(self, message: AbstractIncomingMessage) -> None:
        if message.redelivered:
            self.metrics.redeliveries.labels(ACTIVATIONS).inc()
        requests = await activation_requests_or_dead_letter(message)
        if requests is None:
            return
        if len(requests) == 1 and requests[0].composition:
            # Runs for as long as its steps do: off the consumer's path.
            spawn(self._run_composition(requests[0], message), self._compositions_running)
            return
        # A batch is acked once all of it is placed: a crash before then redelivers all of
        # it, and the records (first write wins) make any second run harmless.
        await asyncio.gather(*(self._place(req) for req in requests))
        await settle(message)

    async def _place(self, req: ActivationRequest) -> None:
        """``_place_on_invoker`` in a span that is the parent of the invoker's."""
        with self.tracer.span("place", req.traceparent, kind="consumer",
                              attributes={"faas.invocation_id": req.activation_id}) as span:
            if span.traceparent != req.traceparent:
                req = req.model_copy(update={"traceparent": span.traceparent})
            invoker = await self._place_on_invoker(req)
            if invoker is not None:
                span.set("ft.invoker", invoker)

    async def _place_on_invoker(self, req: ActivationRequest) -> str | None:
        """On an invoker's queue (confirmed; its id is returned), or answered with an error
        once too old. Never a composition: those travel alone (``gateway.publisher``) and run in
        ``_run_composition``."""
        memory = req.action.limits.memory
        while True:
            usable = self.registry.usable()
            if req.held_by is not None and all(i.id != req.held_by for i in usable):
                # Its invoker is not up: run it elsewhere (at least once).
                req = req.model_copy(update={"held_by": None, "attempt": req.attempt + 1})
            # Held: already running there by the direct path; placed there to be supervised.
            invoker = req.held_by or choose_invoker(
                usable, req.action.key, memory, self.registry.last_placed(req.action.key),
                namespace=req.invoking_namespace, may_leave=req.action.may_leave)
            if invoker is None:
                if now_ms() - req.accepted_at > req.max_age_ms:
                    await self._expire(req)
                    return None
                await self._wait_for_capacity()
                continue
            # Counted before it is sent: its invoker may run it and report its completion
            # before the broker's confirm reaches us, and a completion of work not yet counted
            # would be lost (the work would then look stuck there until its deadline).
            self.registry.placed(invoker, req)
            self.metrics.placements.labels(invoker).inc()
            try:
                await self._outbox(invoker).submit(req)
            except Unroutable as exc:
                # Its queue is gone: not an invoker we can use until it announces itself again.
                log.warning("invoker %s has no queue (%s); forgetting it", invoker, exc)
                self.registry.forget(invoker)
                continue
            except Exception as exc:
                log.warning("could not hand %s to %s: %s", req.activation_id, invoker, exc)
                self.registry.unplaced(invoker, req.activation_id)
                await asyncio.sleep(0.1)
                continue
            return invoker

    def _outbox(self, invoker: str) -> Coalescer[ActivationRequest]:
        """What is placed on ``invoker`` in one turn goes there as one message."""
        outbox = self._outboxes.get(invoker)
        if outbox is None:
            queue = invoker_queue(invoker)

            async def send(activations: list[ActivationRequest]) -> None:
                await self.broker.publish_activations(activations, routing_key=queue)

            outbox = self._outboxes[invoker] = Coalescer(send, f"activations for {invoker}",
                                                         max_batch=INVOKER_BATCH)
        return outbox

    async def _run_composition(
        self, req: ActivationRequest, message: AbstractIncomingMessage
    ) -> None:
        try:
            steps = conduct if req.action.conductor else run_sequence
            await self.compositions.run(req, steps, resumed=message.redelivered)
        except asyncio.CancelledError:
            raise  # stopping: unacked, so it is redelivered and resumed elsewhere
        except Exception:
            log.exception("composition %s failed; requeued", req.activation_id)
            await asyncio.sleep(1.0)
            await settle(message, ack=False, requeue=True)
            return
        await settle(message)  # only now: its record is written

    async def _wait_for_capacity(self) -> None:
        async with self.registry.changed:
            try:
                await asyncio.wait_for(self.registry.changed.wait(), NO_INVOKER_WAIT_S)
            except TimeoutError:
                pass

    async def _expire(self, req: ActivationRequest) -> None:
        """An explicit error record instead of silence."""
        if await answer_with_error(self.store, self.broker, req,
                                   EXPIRED.format(s=req.max_age_ms // 1000), samples=self.samples):
            self.metrics.error_records.labels("expired").inc()

async def serve(settings: Settings) -> None:
    stop = stop_on_signals()
    async with connections(settings, "initializer") as (store, broker):
        tracer = Tracer("initializer")
        initializer = Initializer(settings, store, broker, tracer)
        await initializer.start()
        async with serve_metrics(settings, initializer.metrics_registry):
            await stop.wait()
        await initializer.stop()
        tracer.shutdown()


def run() -> None:
    run_process(serve)
