"""The queue-fed part of the fault load: a trigger bound to a user queue through the
``/whisk.system/rabbitmq/queue`` feed, a rule to an action that returns the keys of the
messages it handled, and a producer publishing with publisher confirms at a steady pace.

A message counts as sent once the broker confirmed it. It must end handled by a successful
activation or in the dead-letter queue. Feeds are at-least-once: a message whose activation
succeeded but whose ack died with a channel is handled again (``redelivered``, printed)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import aio_pika
import aiohttp

from bus.store import Store
from tests.faults.load import put_action

HANDLER = ("import time\ndef main(args):\n    time.sleep(0.05)\n"
           "    return {'keys': [m['body']['k'] for m in args['messages']]}\n")
FEED_ACTION = "/api/v1/namespaces/whisk.system/actions/rabbitmq/queue"


@dataclass
class FeedLoad:
    queue: str
    action: str
    sent: list[str] = field(default_factory=list)
    refused: int = 0


async def setup_feed(http: aiohttp.ClientSession, auth: str, tag: str) -> FeedLoad:
    feed = FeedLoad(queue=f"orders-{tag}", action=f"handle-{tag}")
    trigger, rule = f"orders-{tag}", f"handle-orders-{tag}"
    await put_action(http, feed.action, HANDLER, timeout_ms=10_000)
    body = {"annotations": [{"key": "feed", "value": "/whisk.system/rabbitmq/queue"}]}
    async with http.put(f"/api/v1/namespaces/_/triggers/{trigger}", json=body) as resp:
        assert resp.status == 200, await resp.text()
    params = {"lifecycleEvent": "CREATE", "triggerName": f"/_/{trigger}", "authKey": auth,
              "queue": feed.queue, "batchSize": 5, "maxBatchingWindowMs": 100,
              "maxConcurrency": 4, "maxRetries": 8}
    async with http.post(f"{FEED_ACTION}?blocking=true", json=params) as resp:
        assert resp.status == 200, await resp.text()
    async with http.put(f"/api/v1/namespaces/_/rules/{rule}",
                        json={"trigger": trigger, "action": feed.action}) as resp:
        assert resp.status == 200, await resp.text()
    return feed


async def produce(amqp_url: str, feed: FeedLoad, total: int, per_second: float = 40) -> None:
    """Publish ``total`` messages, each retried until the broker confirmed it."""
    connection = await aio_pika.connect_robust(amqp_url)
    try:
        # A message the broker could not route (returned: the feed's runner has not declared
        # the queue yet, which it does only once it took the feed) is confirmed all the same
        # and dropped; raising makes it "not sent yet" and retried, instead of counted as
        # sent and then reported lost.
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        for _ in range(total):
            key = uuid.uuid4().hex
            message = aio_pika.Message(json.dumps({"k": key}).encode(),
                                       content_type="application/json", message_id=key,
                                       delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            while True:
                try:
                    await asyncio.wait_for(
                        channel.default_exchange.publish(message, feed.queue), 10)
                    break
                except Exception:  # broker away or not confirming: not sent yet
                    feed.refused += 1
                    await asyncio.sleep(0.5)
            feed.sent.append(key)
            await asyncio.sleep(1 / per_second)
    finally:
        await connection.close()


@dataclass
class FeedVerdict:
    sent: int
    handled: int
    dead_lettered: int
    lost: int
    redelivered: int

    def line(self) -> str:
        return (f"feed: sent={self.sent} handled={self.handled} "
                f"dead_lettered={self.dead_lettered} lost={self.lost} "
                f"redelivered={self.redelivered}")


async def _drain_dead_letters(amqp_url: str, queue: str, into: set[str]) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        dlq = await channel.declare_queue(f"{queue}.dlq", durable=True, passive=True)
        while (message := await dlq.get(no_ack=True, fail=False)) is not None:
            into.add(json.loads(message.body)["k"])
    finally:
        await connection.close()


async def feed_verdict(store: Store, amqp_url: str, ns: str, feed: FeedLoad,
                       timeout: float = 60) -> FeedVerdict:
    """Waits until every sent message was handled or dead-lettered (or ``timeout``)."""
    sent = set(feed.sent)
    dead: set[str] = set()
    deadline = time.monotonic() + timeout
    seen: dict[str, list[str]] = {}
    while True:
        for raw in await store.redis.zrange(f"ft:acts:{ns}:{feed.action}", 0, -1):
            aid = raw.decode()
            if aid in seen:
                continue
            record = await store.get_record(aid)
            if record is not None and record.response.success:
                seen[aid] = list(record.response.result.get("keys", []))  # type: ignore[union-attr]
            elif record is not None:
                seen[aid] = []
        await _drain_dead_letters(amqp_url, feed.queue, dead)
        handled = Counter(k for keys in seen.values() for k in keys)
        lost = sent - set(handled) - dead
        if not lost or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    if lost:
        _show_queues(amqp_url, feed.queue)
    return FeedVerdict(sent=len(sent), handled=len(sent & set(handled)),
                       dead_lettered=len(dead & sent), lost=len(lost),
                       redelivered=sum(c - 1 for c in handled.values()))


def _show_queues(amqp_url: str, prefix: str) -> None:
    """Where unhandled messages are (ready/unacked per queue of the feed), for the log."""
    import subprocess

    vhost = amqp_url.rsplit("/", 1)[1] or "/"
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages_ready",
         "messages_unacknowledged", "consumers"], capture_output=True, text=True).stdout
    for line in listed.splitlines():
        if line.startswith(prefix):
            print(f"feed queue: {line}")
