"""RabbitMQ: the topology every process declares idempotently at start, a confirmed
publisher, and consumers that ack only after their handler has handed its output on.

Topology (one vhost):
  ft.activations     durable work queue, gateway -> initializers (one ActivationRequest, or
                     an ActivationBatch: AMQP type "batch")
  ft.invoker.<id>    durable queue per invoker, initializer -> invoker (one request, or a batch
                     of those placed there in one turn of the initializer's event loop)
  ft.replies.<gw>    exclusive reply queue per gateway, invoker -> gateway
  ft.completions     fanout exchange, invoker -> every initializer
  ft.health          fanout exchange, invoker heartbeats -> every initializer
  ft.events          topic exchange, routing key <namespace>.<trigger>: trigger fires from
                     the gateway and from any AMQP producer; queue ft.fires takes them all
  ft.activation-events  topic exchange, <namespace>.<action>.<status>: every finished one
  ft.feeds           fanout exchange: feed created/updated/deleted (FeedChanged)
  ft.metrics         fanout exchange: samples of finished activations -> every gateway
  ft.destinations    durable queue: async on-success/on-failure deliveries
  ft.delay.<ms>      durable queues that hand retries back to ft.activations after <ms>
  ft.dead            fanout dead-letter exchange and queue for poison messages
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aio_pika
from aio_pika import DeliveryMode
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import DeliveryError
from aiormq.exceptions import ChannelInvalidStateError
from pamqp.commands import Basic
from pydantic import BaseModel

from bus.codec import CONTENT_TYPE, pack, unpack
from bus.events import ACTIVATION_EVENTS, DESTINATIONS_QUEUE, FEEDS_EXCHANGE, FIRES_QUEUE
from bus.models import ActivationBatch, ActivationRecord, ActivationRequest, Heartbeat, StatusCode
from bus.rabbit_nodes import connect_to_cluster

log = logging.getLogger(__name__)

ACTIVATIONS = "ft.activations"
COMPLETIONS = "ft.completions"
HEALTH = "ft.health"
METRICS = "ft.metrics"
EVENTS = "ft.events"
DEAD = "ft.dead"
BATCH = "batch"  # AMQP type of an ActivationBatch (ft.activations, ft.invoker.<id>)

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]


class PublishRefused(Exception):
    """The broker did not take responsibility for a message."""


class Unroutable(PublishRefused):
    """A mandatory message matched no queue (e.g. a vanished invoker's)."""


EVENT_STATUS = {
    StatusCode.SUCCESS: "success",
    StatusCode.APPLICATION_ERROR: "application_error",
    StatusCode.DEVELOPER_ERROR: "developer_error",
    StatusCode.WHISK_ERROR: "whisk_error",
}


def invoker_queue(invoker_id: str) -> str:
    return f"ft.invoker.{invoker_id}"


def reply_queue(gateway_id: str) -> str:
    return f"ft.replies.{gateway_id}"


_DURABLE_WORK_ARGS = {"x-dead-letter-exchange": DEAD}
RENEW_CHANNEL_AFTER_NACKS = 3
QUORUM = {"x-queue-type": "quorum"}


class Broker:
    """One robust connection; a confirming channel for publishing, one channel per consumer."""

    def __init__(
        self, connection: AbstractRobustConnection, publish_channel: AbstractChannel,
        fast_channel: AbstractChannel, *, quorum: bool = False,
    ) -> None:
        self.connection = connection
        # Every durable queue the platform declares, as a quorum queue (a RabbitMQ cluster:
        # replicated on a majority of nodes) or a classic one (a single broker).
        self._durable_args = {**_DURABLE_WORK_ARGS, **(QUORUM if quorum else {})}
        self._queue_type = QUORUM if quorum else {}
        self._channel = publish_channel
        # Replies, completions and heartbeats are advisory (the record in Redis is the truth):
        # they skip the confirm round trip.
        self._fast_channel = fast_channel
        self._exchanges: dict[str, AbstractExchange] = {}
        self._consumer_channels: list[AbstractChannel] = []
        self._consumer_tags: dict[str, str] = {}
        self._inspect_channel: AbstractChannel | None = None
        self._refused_in_a_row = 0
        self._renewing = asyncio.Lock()

    @classmethod
    async def connect(cls, url: str, *, name: str = "funtainer", quorum: bool = False) -> Broker:
        connection = await connect_to_cluster(url, name=name)
        channel = await connection.channel(publisher_confirms=True)
        fast = await connection.channel(publisher_confirms=False)
        broker = cls(connection, channel, fast, quorum=quorum)
        await broker.declare_topology()
        return broker

    async def close(self) -> None:
        await self.connection.close()

    async def declare_topology(self) -> None:
        ch = self._channel
        dead = await ch.declare_exchange(DEAD, aio_pika.ExchangeType.FANOUT, durable=True)
        dead_q = await ch.declare_queue(DEAD, durable=True, arguments=self._queue_type)
        await dead_q.bind(dead)
        await ch.declare_queue(ACTIVATIONS, durable=True, arguments=self._durable_args)
        await ch.declare_queue(DESTINATIONS_QUEUE, durable=True, arguments=self._durable_args)
        for name, kind in (
            (COMPLETIONS, aio_pika.ExchangeType.FANOUT),
            (HEALTH, aio_pika.ExchangeType.FANOUT),
            (METRICS, aio_pika.ExchangeType.FANOUT),
            (EVENTS, aio_pika.ExchangeType.TOPIC),
            (ACTIVATION_EVENTS, aio_pika.ExchangeType.TOPIC),
            (FEEDS_EXCHANGE, aio_pika.ExchangeType.FANOUT),
        ):
            self._exchanges[name] = await ch.declare_exchange(name, kind, durable=True)
        fires = await ch.declare_queue(FIRES_QUEUE, durable=True, arguments=self._durable_args)
        await fires.bind(self._exchanges[EVENTS], routing_key="#")
        self._exchanges[""] = ch.default_exchange

    async def declare_delay_queue(self, delay_ms: int) -> str:
        """A queue whose messages return to ``ft.activations`` after ``delay_ms``: retries
        wait in the broker, not in a process that may die meanwhile. One queue per delay,
        since RabbitMQ expires messages only at a queue's head."""
        name = f"ft.delay.{delay_ms}"
        await self._channel.declare_queue(name, durable=True, arguments={
            **self._queue_type,
            "x-message-ttl": delay_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": ACTIVATIONS,
        })
        return name

    async def declare_invoker_queue(self, invoker_id: str) -> str:
        name = invoker_queue(invoker_id)
        await self._channel.declare_queue(name, durable=True, arguments=self._durable_args)
        return name

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self, model: BaseModel, *, routing_key: str, exchange: str = "",
        message_id: str | None = None, persistent: bool = True, mandatory: bool = True,
        expiration: float | None = None, confirm: bool = True, message_type: str | None = None,
    ) -> None:
        """Publish a contract model (msgpack) and, with ``confirm``, wait for the broker's
        confirm: after this returns, the message is the broker's responsibility. Raises if the
        broker refused it or, with ``mandatory``, if it was unroutable. Without ``confirm`` it
        is fire-and-forget."""
        await self.publish_bytes(
            pack(model), content_type=CONTENT_TYPE, routing_key=routing_key, exchange=exchange,
            message_id=message_id, persistent=persistent, mandatory=mandatory,
            expiration=expiration, confirm=confirm, message_type=message_type,
        )

    async def publish_activations(
        self, activations: list[ActivationRequest], *, routing_key: str
    ) -> None:
        """Several activations to one queue, confirmed: one alone as itself (named by its id),
        more as one ``ActivationBatch``."""
        if len(activations) == 1:
            [activation] = activations
            await self.publish(activation, routing_key=routing_key,
                               message_id=activation.activation_id)
        else:
            await self.publish(ActivationBatch(requests=activations), routing_key=routing_key,
                               message_type=BATCH)

    async def publish_bytes(
        self, body: bytes, *, content_type: str | None, routing_key: str, exchange: str = "",
        message_id: str | None = None, persistent: bool = True, mandatory: bool = True,
        expiration: float | None = None, confirm: bool = True,
        headers: dict[str, Any] | None = None, message_type: str | None = None,
    ) -> None:
        """Like ``publish`` for bodies meant for any AMQP client (JSON for users' consumers)."""
        message = aio_pika.Message(
            body,
            content_type=content_type,
            message_id=message_id,
            delivery_mode=DeliveryMode.PERSISTENT if persistent else DeliveryMode.NOT_PERSISTENT,
            expiration=expiration,
            headers=headers,
            type=message_type,
        )
        if not confirm:
            await self._publish_advisory(message, exchange=exchange, routing_key=routing_key,
                                         mandatory=mandatory)
            return
        try:
            outcome = await self._exchanges[exchange].publish(message, routing_key,
                                                              mandatory=mandatory)
        except DeliveryError:
            await self._refused()
            raise
        self._refused_in_a_row = 0
        # aio-pika reports an unroutable mandatory message as a normal return whose delivery
        # is a Basic.Return: treat it, and a nack, as the failure it is.
        delivery = getattr(outcome, "delivery", None)
        if isinstance(delivery, Basic.Return):
            raise Unroutable(f"{exchange or '(default)'}/{routing_key}: {delivery.reply_text}")
        if isinstance(delivery, Basic.Nack):
            raise PublishRefused(f"{exchange or '(default)'}/{routing_key} was nacked")

    async def _refused(self) -> None:
        """A nack. After a RabbitMQ node died, a channel restored on another node may go on
        nacking every publish to a quorum queue that node led, long after the queue has a new
        leader (seen on 3.10: until the dead node returned); a new channel publishes at once.
        So after a few nacks in a row the confirming channel is replaced."""
        self._refused_in_a_row += 1
        if self._refused_in_a_row < RENEW_CHANNEL_AFTER_NACKS or self._renewing.locked():
            return
        async with self._renewing:
            self._refused_in_a_row = 0
            log.warning("%d publishes nacked in a row: opening a new confirming channel",
                        RENEW_CHANNEL_AFTER_NACKS)
            stale, self._channel = self._channel, await self.connection.channel(
                publisher_confirms=True)
            await self.declare_topology()  # the exchanges, as objects of the new channel
            with contextlib.suppress(Exception):
                await stale.close()

    async def _publish_advisory(
        self, message: aio_pika.Message, *, exchange: str, routing_key: str, mandatory: bool
    ) -> None:
        """Fire-and-forget, straight on the channel: aio-pika's publish waits until the frame
        was written (a hand-off to the connection's writer task and back per message, under
        the channel's lock), which buys nothing without a confirm."""
        if mandatory:
            raise ValueError("a mandatory message needs a confirm to learn it was unroutable")
        if self._fast_channel.is_closed:
            raise ChannelInvalidStateError(f"{self._fast_channel!r} closed")
        channel = await self._fast_channel.get_underlay_channel()
        await channel.basic_publish(message.body, exchange=exchange, routing_key=routing_key,
                                    properties=message.properties, wait=False)

    # -- consuming ---------------------------------------------------------------------------

    async def consume(
        self, queue: str | None, handler: Handler, *, prefetch: int, bind_to: str | None = None,
        exclusive: bool = False, auto_ack: bool = False,
    ) -> AbstractQueue:
        """Start consuming ``queue`` (a server-named exclusive queue if None, bound to the
        fanout exchange ``bind_to``). The handler owns ack/nack of each message, unless
        ``auto_ack``: for advisory messages, which the broker forgets once delivered."""
        channel = await self.connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        self._consumer_channels.append(channel)
        if queue is None:
            q = await channel.declare_queue(exclusive=True, auto_delete=True)
        elif exclusive:
            q = await channel.declare_queue(queue, exclusive=True, auto_delete=True)
        else:
            # Declared (passively: it exists, with its arguments), not just looked up: a robust
            # channel restores only the queues declared through it, and their consumers with
            # them. A looked-up queue lost its consumer for good when RabbitMQ restarted.
            q = await channel.declare_queue(queue, passive=True)
        if bind_to is not None:
            await q.bind(bind_to)
        self._consumer_tags[q.name] = await q.consume(handler, no_ack=auto_ack)
        return q

    async def publish_heartbeat(self, beat: Heartbeat) -> None:
        """An invoker's heartbeat on ``ft.health``: fire-and-forget, and never raises (the next
        one follows a second later; silence is what the initializers act on)."""
        with contextlib.suppress(Exception):
            await self.publish(beat, exchange=HEALTH, routing_key="", persistent=False,
                               mandatory=False, confirm=False)

    async def announce_activation(self, record: ActivationRecord) -> None:
        """A finished activation's record, as JSON, on ``ft.activation-events`` (topic
        ``<namespace>.<action>.<status>``) for users' consumers and gateways' waiters.
        Advisory: the record in Redis is the truth."""
        status = EVENT_STATUS[record.response.status_code]
        await self.publish_bytes(
            json.dumps(record.to_api(), separators=(",", ":")).encode(),
            content_type="application/json", exchange=ACTIVATION_EVENTS,
            routing_key=f"{record.namespace}.{record.name}.{status}",
            message_id=record.activationId, persistent=False, mandatory=False, confirm=False)

    async def backlog(self, queue: str) -> int:
        """Messages waiting in ``queue`` (not delivered to a consumer yet). Asked on a channel
        of its own: a passive declare of a missing queue closes the channel it was sent on."""
        if self._inspect_channel is None or self._inspect_channel.is_closed:
            self._inspect_channel = await self.connection.channel()
        # The underlying channel: a robust one answers a repeated passive declare from memory.
        channel = await self._inspect_channel.get_underlay_channel()
        declared = await channel.queue_declare(queue=queue, passive=True)
        return int(declared.message_count or 0)

    async def stop_consuming(self, queue: AbstractQueue) -> None:
        """Stop new deliveries; unacked messages stay with us until settled."""
        tag = self._consumer_tags.pop(queue.name, None)
        if tag is not None:
            try:
                await queue.cancel(tag)
            except Exception as exc:
                log.warning("could not cancel consumer of %s: %s", queue.name, exc)


def activation_requests(message: AbstractIncomingMessage) -> list[ActivationRequest]:
    """The activations a message of ``ft.activations`` or an invoker's queue carries: one, or
    a batch."""
    if message.type == BATCH:
        return unpack(message.body, ActivationBatch).requests
    return [unpack(message.body, ActivationRequest)]


async def activation_requests_or_dead_letter(
    message: AbstractIncomingMessage,
) -> list[ActivationRequest] | None:
    """``activation_requests``, or None for a message that cannot be read: it is rejected
    without requeueing, so ``ft.dead`` keeps it instead of it coming back forever."""
    try:
        return activation_requests(message)
    except Exception:
        log.exception("poison message %s sent to ft.dead", message.message_id)
        await settle(message, ack=False, requeue=False)
        return None


async def settle(
    message: AbstractIncomingMessage, *, ack: bool = True, requeue: bool = True
) -> None:
    """Ack or nack, tolerating a channel that died meanwhile: the broker then redelivers the
    message, and idempotent records make that harmless."""
    try:
        if ack:
            await message.ack()
        else:
            await message.nack(requeue=requeue)
    except Exception as exc:  # channel closed under us: redelivery is the recovery path
        log.warning("could not settle message %s: %s", message.message_id, exc)


def spawn(coro: Awaitable[None], tasks: set[asyncio.Task[None]]) -> asyncio.Task[None]:
    """Run a coroutine in the background, keeping a reference until it finishes."""
    task = asyncio.ensure_future(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task
