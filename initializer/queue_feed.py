"""One running queue feed: consume the user's queue, fire the trigger once per batch, and
settle each message only when its batch's outcome is known.

A message is acked after it succeeded, or after its retry (in ``<queue>.retry.<ms>``, which
dead-letters it back to the queue when its time is up) or its dead-letter copy was confirmed
by the broker. Until then it stays unacked on this runner's own channel, so closing that
channel (lost lease, crash) hands it back to the queue for the feed's next owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from bus.broker import Broker, settle, spawn
from bus.config import Settings
from bus.events import FeedDoc, TriggerFire
from bus.ids import new_activation_id, now_ms
from bus.models import ActivationRecord
from bus.queues import ensure_queue
from bus.replies import ReplyWaiters
from bus.store import Store
from initializer.batches import (
    ATTEMPT_HEADER,
    MESSAGE_ID_HEADER,
    Failure,
    FeedItem,
    batch_failures,
    retry_delay_ms,
    whole_batch,
)
from initializer.fanout import FireFanout, RuleActivation, TriggerNotFound

log = logging.getLogger(__name__)

REPLY_MARGIN_S = 30.0  # beyond the action's time limit: queueing, cold start, record write
NO_ACTIVE_RULES = "the trigger has no active rule"
HANDOFF_RETRY_PAUSE_S = 0.5
MAX_PREFETCH = 65_535  # AMQP's prefetch count is 16 bits


class QueueFeedRunner:
    def __init__(
        self, doc: FeedDoc, *, broker: Broker, store: Store, fanout: FireFanout,
        waiters: ReplyWaiters, settings: Settings,
    ) -> None:
        if doc.queue is None:
            raise ValueError(f"queue feed {doc.key} names no queue")
        self.doc = doc
        self.queue_name = doc.queue
        self.dead_letter_queue = doc.dead_letters
        self.broker = broker
        self.store = store
        self.fanout = fanout
        self.waiters = waiters
        self.settings = settings
        self.batch_size = max(1, doc.batch_size)
        self._slots = asyncio.Semaphore(max(1, doc.max_concurrency))
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._batcher: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._retry_queues: set[str] = set()
        self._declaring = asyncio.Lock()

    async def start(self) -> None:
        connection = self.broker.connection
        await ensure_queue(connection, self.queue_name)
        await ensure_queue(connection, self.dead_letter_queue)
        self._channel = await connection.channel()
        prefetch = min(MAX_PREFETCH, self.batch_size * max(1, self.doc.max_concurrency))
        await self._channel.set_qos(prefetch_count=prefetch)
        # Passively declared, so the robust channel restores it and its consumer after a
        # broker restart (see Broker.consume).
        self._queue = await self._channel.declare_queue(self.queue_name, passive=True)
        self._consumer_tag = await self._queue.consume(self._on_message)
        self._batcher = asyncio.create_task(self._gather_batches())
        log.info("feed %s consuming %s (batches of %d, %d in flight)", self.doc.key,
                 self.queue_name, self.batch_size, self.doc.max_concurrency)

    async def stop(self, grace_s: float) -> None:
        """Take no more messages, let batches in flight finish for up to ``grace_s``, then
        give everything unsettled back to the queue."""
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        if self._batcher is not None:
            self._batcher.cancel()
        if self._batches:
            await asyncio.wait(list(self._batches), timeout=grace_s)
        await self.abort()

    async def abort(self) -> None:
        """Stop at once (the lease is gone: someone else may own the feed any moment)."""
        if self._batcher is not None:
            self._batcher.cancel()
        for task in list(self._batches):
            task.cancel()
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await self._channel.close()
            self._channel = None
        log.info("feed %s stopped", self.doc.key)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        self._inbox.put_nowait(message)

    # -- batching ----------------------------------------------------------------------------

    async def _gather_batches(self) -> None:
        loop = asyncio.get_running_loop()
        window_s = self.doc.max_batching_window_ms / 1000
        while True:
            await self._slots.acquire()
            batch = [await self._inbox.get()]
            deadline = loop.time() + window_s
            while len(batch) < self.batch_size:
                if not self._inbox.empty():
                    batch.append(self._inbox.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        batch.append(await self._inbox.get())
                except TimeoutError:
                    break
            spawn(self._run_batch(batch), self._batches)

    async def _run_batch(self, batch: list[AbstractIncomingMessage]) -> None:
        try:
            items = [FeedItem.of(message) for message in batch]
            failures = await self._outcome(items)
            await self._settle(items, failures)
        except Exception:
            log.exception("feed %s: batch not settled, returned to the queue", self.doc.key)
            for message in batch:
                await settle(message, ack=False, requeue=True)
        finally:
            self._slots.release()

    async def _outcome(self, items: list[FeedItem]) -> dict[str, Failure]:
        ids = [item.message_id for item in items]
        fire = TriggerFire(
            activation_id=new_activation_id(), namespace=self.doc.namespace,
            trigger=self.doc.trigger, subject=self.doc.namespace,
            payload={"messages": [item.entry() for item in items]}, fired_at=now_ms(),
        )
        try:
            result = await self.fanout.fire(fire, waiters=self.waiters)
        except TriggerNotFound:
            return whole_batch(ids, Failure(
                {"error": f"trigger /{self.doc.key} does not exist"}, None))
        except Exception as exc:
            log.warning("feed %s could not fire: %s", self.doc.key, exc)
            return whole_batch(ids, Failure({"error": f"trigger not fired: {exc}"}, None))
        if not result.rules:
            return whole_batch(ids, Failure({"error": NO_ACTIVE_RULES}, fire.activation_id))
        answers = await asyncio.gather(*(self._answer(rule) for rule in result.rules))
        return batch_failures(ids, result.rules, [a[0] for a in answers],
                              [a[1] for a in answers])

    async def _answer(self, rule: RuleActivation) -> tuple[ActivationRecord | None, float]:
        """The rule activation's record: from its reply, or read once if none came in time."""
        wait_s = rule.timeout_ms / 1000 + REPLY_MARGIN_S
        if rule.activation_id is None or rule.reply is None:
            return None, wait_s
        try:
            async with asyncio.timeout(wait_s):
                return await rule.reply, wait_s
        except TimeoutError:
            return await self.store.get_record(rule.activation_id), wait_s
        finally:
            self.waiters.discard(rule.activation_id)

    # -- settling ----------------------------------------------------------------------------

    async def _settle(self, items: list[FeedItem], failures: dict[str, Failure]) -> None:
        failed = [item for item in items if item.message_id in failures]
        handed_off = await asyncio.gather(
            *(self._hand_off(item, failures[item.message_id]) for item in failed),
            return_exceptions=True)
        returned = set()
        for item, outcome in zip(failed, handed_off, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("feed %s: message %s not handed off, returned to the queue: %s",
                            self.doc.key, item.message_id, outcome)
                returned.add(id(item))
        if returned:
            await asyncio.sleep(HANDOFF_RETRY_PAUSE_S)  # not straight back into a failing path
        for item in failed:
            if id(item) in returned:
                await settle(item.message, ack=False, requeue=True)
        for item in items:
            if id(item) not in returned:
                await settle(item.message)

    async def _hand_off(self, item: FeedItem, failure: Failure) -> None:
        headers = {**item.user_headers(), MESSAGE_ID_HEADER: item.message_id}
        if item.attempt <= self.doc.max_retries:
            delay = retry_delay_ms(item.attempt, self.settings.feed_retry_base_ms,
                                   self.settings.feed_retry_max_ms)
            target = await self._retry_queue(delay)
            headers[ATTEMPT_HEADER] = item.attempt + 1
        else:
            target = self.dead_letter_queue
            headers |= {
                "x-ft-attempts": item.attempt,
                "x-ft-error": json.dumps(failure.error, separators=(",", ":"), default=str),
                "x-ft-trigger": f"/{self.doc.key}",
                "x-ft-activation-id": failure.activation_id or "",
            }
            log.info("feed %s: message %s dead-lettered after %d attempts", self.doc.key,
                     item.message_id, item.attempt)
        message = item.message
        try:
            await self.broker.publish_bytes(
                message.body, routing_key=target, content_type=message.content_type,
                message_id=message.message_id, headers=headers)
        except Exception:
            # Unroutable: someone deleted the queue. Declare it again for the next try.
            self._retry_queues.discard(target)
            if target == self.dead_letter_queue:
                await ensure_queue(self.broker.connection, target)
            raise

    async def _retry_queue(self, delay_ms: int) -> str:
        """``<queue>.retry.<ms>``: one per delay, since messages expire only at the head."""
        name = f"{self.queue_name}.retry.{delay_ms}"
        if name not in self._retry_queues:
            async with self._declaring:
                if name not in self._retry_queues:
                    await ensure_queue(self.broker.connection, name, {
                        "x-message-ttl": delay_ms,
                        "x-dead-letter-exchange": "",
                        "x-dead-letter-routing-key": self.queue_name,
                    })
                    self._retry_queues.add(name)
        return name
