"""Once a second: publish the registry's view of the invokers (``GET /invokers``), answer
activations whose invoker missed their deadline, and drain the queues of dead invokers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import aiormq

from bus.broker import Broker
from bus.ids import now_ms
from bus.samples import SamplePublisher
from bus.store import Store
from initializer.answers import answer_with_error
from initializer.drain import QueueDrain, lease_name
from initializer.metrics import InitializerMetrics
from initializer.registry import InvokerRegistry

log = logging.getLogger(__name__)

INVOKERS_KEY = "ft:invokers"
TICK_S = 1.0
UNRESPONSIVE = "The invoker {invoker} did not complete the activation in time (unresponsive)."


class Supervisor:
    def __init__(
        self, owner: str, registry: InvokerRegistry, store: Store, broker: Broker,
        drain_lease_ttl_ms: int, *, samples: SamplePublisher, metrics: InitializerMetrics,
    ) -> None:
        self.owner = owner
        self.samples = samples
        self.metrics = metrics
        self.registry = registry
        self.store = store
        self.broker = broker
        self.lease_ttl_ms = drain_lease_ttl_ms
        self.drains: dict[str, QueueDrain] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        # The flag as well as the cancel: a step that swallows the CancelledError (a client
        # library cleaning up a cancelled call) must not keep the loop, and this wait, alive.
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for invoker_id in list(self.drains):
            await self._stop_drain(invoker_id)

    async def _loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(TICK_S)
            if self._stopping:
                return
            for step in (self.publish, self.sweep, self.supervise_drains):
                try:
                    await step()
                except Exception:
                    log.exception("%s failed", step.__name__)

    async def publish(self) -> None:
        states = self.registry.statuses()
        if states:
            at = now_ms()
            await self.store.redis.hset(INVOKERS_KEY, mapping={
                i: json.dumps({"state": s, "at": at}) for i, s in states.items()})

    async def sweep(self) -> None:
        """OpenWhisk's forced completion, with a record: an activation whose invoker did not
        complete it in time gets an explicit error unless a record exists."""
        for invoker_id, placed in self.registry.overdue():
            req = placed.request
            error = UNRESPONSIVE.format(invoker=invoker_id)
            if await answer_with_error(self.store, self.broker, req, error,
                                       samples=self.samples, invoker_id=invoker_id):
                self.metrics.error_records.labels("unresponsive").inc()
                log.warning("activation %s: %s", req.activation_id, error)
            self.registry.timed_out(invoker_id, req.activation_id)

    async def supervise_drains(self) -> None:
        down = set(self.registry.down())
        for invoker_id in list(self.drains):
            if invoker_id not in down:  # back: its queue is its own again
                await self._stop_drain(invoker_id)
            elif not await self.store.acquire_lease(
                    lease_name(invoker_id), self.owner, self.lease_ttl_ms):
                await self._stop_drain(invoker_id)  # lease lost (e.g. we stalled): let go
        for invoker_id in down - set(self.drains):
            if await self.store.acquire_lease(lease_name(invoker_id), self.owner,
                                              self.lease_ttl_ms):
                drain = QueueDrain(self.store, self.broker, invoker_id)
                try:
                    await drain.start()
                except aiormq.exceptions.ChannelNotFoundEntity:
                    # No queue, so nothing to drain: an invoker that never took work (or whose
                    # queue was deleted). Forget it until it heart-beats again.
                    await drain.stop()
                    await self.store.release_lease(lease_name(invoker_id), self.owner)
                    self.registry.forget(invoker_id)
                    continue
                except Exception as exc:
                    log.warning("cannot drain %s: %s", invoker_id, exc)
                    await drain.stop()
                    await self.store.release_lease(lease_name(invoker_id), self.owner)
                    continue
                self.drains[invoker_id] = drain

    async def _stop_drain(self, invoker_id: str) -> None:
        drain = self.drains.pop(invoker_id)
        await drain.stop()
        with contextlib.suppress(Exception):
            await self.store.release_lease(lease_name(invoker_id), self.owner)
