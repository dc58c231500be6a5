"""Scenarios bound by the wall clock rather than by work, started when the session starts and
checked when their test's turn comes (a pytest plugin, registered in tests/conftest.py).

A test marked ``@pytest.mark.starts_early("<fixture>")`` names a session fixture that returns
a running task; the autouse fixture below requests it before the first test, so its minutes
pass while the rest of the suite runs. Each such scenario runs on a small cluster of its own
(own vhost, Redis database and processes): nothing another test kills or loads reaches it.

``throttled_runs``: a namespace over its throttle is slowed down, not failed, wherever the
producer can wait. 200 messages through a queue feed at 60 invocations/minute and 100 events
published to ``ft.events`` at 30/minute, at once in two namespaces whose limits are set the way
an operator sets them (``ft admin limits set``)."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aio_pika
import aiohttp
import pytest

from bus.broker import EVENTS, Broker
from bus.config import Settings
from bus.events import FEEDS_EXCHANGE, EntityRef, FeedChanged, FeedDoc, RuleLink, TriggerDoc
from bus.ids import now_ms
from bus.models import ActivationRecord, NamespaceAuth
from bus.store import Store
from cli.cluster import LocalCluster, free_port, settings_env
from tests.conftest import claimed_redis_db, fresh_vhost

ACTIONS = "/api/v1/namespaces/_/actions"
SEEN = ("def main(args):\n"
        "    msgs = args.get('messages') or []\n"
        "    return {'ids': [m['messageId'] for m in msgs], 'n': args.get('n'),\n"
        "            'attempts': [m['attempt'] for m in msgs]}\n")
FEED_MESSAGES, FEED_PER_MINUTE = 200, 60
EVENTS_SENT, EVENTS_PER_MINUTE = 100, 30
# 200 at 60/min needs the fourth minute window (100 at 30/min too); one more for slack.
WITHIN_S = 5 * 60


@dataclass
class Namespace:
    name: str
    http: aiohttp.ClientSession


@dataclass
class Platform:
    processes: LocalCluster
    settings: Settings
    store: Store
    broker: Broker


@pytest.fixture(scope="session", autouse=True)
def _early_scenarios_started(request: pytest.FixtureRequest) -> None:
    """Before the first test: start every scenario a selected test waits for."""
    for item in request.session.items:
        for mark in item.iter_markers("starts_early"):
            for name in mark.args:
                request.getfixturevalue(name)


@pytest.fixture(scope="session")
async def throttled_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[asyncio.Task[None]]:
    with fresh_vhost("ft-throttled") as amqp_url, claimed_redis_db() as redis_url:
        settings = Settings(amqp_url=amqp_url, redis_url=redis_url,
                            work_dir=tmp_path_factory.mktemp("ft-throttled-work"))
        processes = LocalCluster(
            env=settings_env(amqp_url=amqp_url, redis_url=redis_url, port=free_port(),
                             work_dir=settings.work_dir, user_memory_mb=768,
                             stem_cells=[{"kind": "python:3.11", "memory": 256, "count": 1}]),
            invoker_ids=[f"thr-{uuid.uuid4().hex[:6]}"],
            log_dir=tmp_path_factory.mktemp("ft-throttled-logs"),
        )
        processes.start()
        task = asyncio.create_task(_throttled_scenarios(processes, settings))
        yield task
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(processes.stop)


async def _throttled_scenarios(processes: LocalCluster, settings: Settings) -> None:
    await asyncio.to_thread(processes.wait_for_gateway, 120)
    store = Store.from_url(settings.redis_url)
    broker = await Broker.connect(settings.amqp_url, name="throttled-scenarios")
    connection = await aio_pika.connect(settings.amqp_url)
    platform = Platform(processes, settings, store, broker)
    namespaces = []
    try:
        for _ in range(2):
            auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32),
                                 namespace=f"bp-{uuid.uuid4().hex[:8]}")
            await store.put_auth(auth)
            headers = {"Authorization": aiohttp.encode_basic_auth(auth.uuid, auth.key)}
            namespaces.append(Namespace(auth.namespace, aiohttp.ClientSession(
                base_url=processes.api_host, headers=headers)))
        channel = await connection.channel(publisher_confirms=True)
        feed_ns, events_ns = namespaces
        await asyncio.gather(_feed_scenario(platform, feed_ns, channel),
                             _events_scenario(platform, events_ns, channel))
    except BaseException:
        print(processes.logs())
        raise
    finally:
        for ns in namespaces:
            await ns.http.close()
        await connection.close()
        await broker.close()
        await store.close()


def _limit(platform: Platform, ns: str, per_minute: int) -> None:
    """As an operator does it: `ft admin limits set`."""
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "admin", "limits", "set", ns,
         "--invocationsPerMinute", str(per_minute)],
        env={"FT_REDIS_URL": platform.settings.redis_url, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr


async def _rule_to(store: Store, ns: Namespace, trigger: str, action: str) -> None:
    async with ns.http.put(f"{ACTIONS}/{action}",
                           json={"exec": {"kind": "python:3.11", "code": SEEN}}) as resp:
        assert resp.status == 200, await resp.text()
    doc = TriggerDoc(namespace=ns.name, name=trigger, rules={
        f"{ns.name}/r-{trigger}": RuleLink(action=EntityRef(path=ns.name, name=action),
                                           status="active")})
    assert await store.put_entity("triggers", ns.name, trigger, doc, updated=now_ms(),
                                  replaces=None)


async def _records(store: Store, ns: str, name: str) -> list[ActivationRecord]:
    return await store.list_records(ns, name=name, limit=100_000)


async def _until_records(store: Store, ns: str, name: str, count: int) -> float:
    started = time.monotonic()
    while len(await _records(store, ns, name)) < count:
        assert time.monotonic() - started < WITHIN_S, (
            f"{ns}/{name}: {len(await _records(store, ns, name))} of {count} ran")
        await asyncio.sleep(1)
    return time.monotonic() - started


def _says_throttled(record: ActivationRecord) -> bool:
    return "Too many" in json.dumps(record.model_dump(mode="json"))


async def _feed_scenario(platform: Platform, ns: Namespace,
                         channel: aio_pika.abc.AbstractChannel) -> None:
    store, broker = platform.store, platform.broker
    action, trigger, queue = "seen", "orders", f"bp-{uuid.uuid4().hex[:8]}"
    await _rule_to(store, ns, trigger, action)
    _limit(platform, ns.name, FEED_PER_MINUTE)
    await channel.declare_queue(queue, durable=True)
    feed = FeedDoc(namespace=ns.name, trigger=trigger, kind="queue", queue=queue,
                   batch_size=1, created=now_ms())
    await store.put_feed(feed)
    await broker.publish(FeedChanged(key=feed.key), exchange=FEEDS_EXCHANGE, routing_key="")
    try:
        ids = [uuid.uuid4().hex for _ in range(FEED_MESSAGES)]
        for i, mid in enumerate(ids):
            await channel.default_exchange.publish(
                aio_pika.Message(json.dumps({"n": i}).encode(), message_id=mid,
                                 content_type="application/json",
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue)
        took = await _until_records(store, ns.name, action, FEED_MESSAGES)
        records = await _records(store, ns.name, action)
        dlq = await channel.declare_queue(f"{queue}.dlq", durable=True)
        print(f"\n[queue feed at {FEED_PER_MINUTE}/min] {len(records)} of {FEED_MESSAGES} ran "
              f"in {took:.0f} s, DLQ {dlq.declaration_result.message_count}")
        assert sorted(i for r in records for i in r.response.result["ids"]) == sorted(ids)
        assert all(r.response.success for r in records)
        # A throttled message waited; it was not retried, so each ran at its first attempt.
        assert {a for r in records for a in r.response.result["attempts"]} == {1}
        assert dlq.declaration_result.message_count == 0
        assert not [r for r in records + await _records(store, ns.name, trigger)
                    if _says_throttled(r)]
        # Slowed to the limit: the 200 spread over at least three minute windows.
        assert took > 100
    finally:
        await store.delete_feed(feed.key)
        await broker.publish(FeedChanged(key=feed.key, deleted=True), exchange=FEEDS_EXCHANGE,
                             routing_key="")


async def _events_scenario(platform: Platform, ns: Namespace,
                           channel: aio_pika.abc.AbstractChannel) -> None:
    store = platform.store
    action, trigger = "seen", "clicks"
    await _rule_to(store, ns, trigger, action)
    _limit(platform, ns.name, EVENTS_PER_MINUTE)
    exchange = await channel.get_exchange(EVENTS)
    for i in range(EVENTS_SENT):
        await exchange.publish(
            aio_pika.Message(json.dumps({"n": i}).encode(), content_type="application/json",
                             delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=f"{ns.name}.{trigger}")
    took = await _until_records(store, ns.name, action, EVENTS_SENT)
    records = await _records(store, ns.name, action)
    fires = await _records(store, ns.name, trigger)
    print(f"\n[ft.events at {EVENTS_PER_MINUTE}/min] {len(records)} of {EVENTS_SENT} ran in "
          f"{took:.0f} s, {len(fires)} trigger records")
    assert sorted(r.response.result["n"] for r in records) == list(range(EVENTS_SENT))
    assert all(r.response.success for r in records)
    assert len(fires) == EVENTS_SENT
    assert not [r for r in records + fires if _says_throttled(r)]
    assert took > 100


