"""Triggers, rules and feeds end to end: fires from the gateway's contract and from any AMQP
producer, queue feeds (batching, retries, dead letters, partial batch failures, owner crash),
interval alarms across initializers, and destinations.

Triggers, rules and feeds are written straight into Redis with the store API (plus the
``FeedChanged`` the gateway publishes); actions go through HTTP. Outcomes are read from
activation records and from the queues themselves.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import aiohttp
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from bus.broker import EVENTS, Broker
from bus.cron import Cron
from bus.events import (
    FEEDS_EXCHANGE,
    Destination,
    DestinationRecord,
    EntityRef,
    FeedChanged,
    FeedDoc,
    RuleLink,
    TriggerDoc,
    TriggerFire,
)
from bus.ids import new_activation_id, now_ms
from bus.models import ActivationRecord, KeyValue
from bus.store import Store
from funtainer import ActivationFailed, AsyncClient, NotFound
from initializer.schedule import cron_ticks, interval_ticks
from tests.cluster_fixtures import Cluster, ExtraInitializers
from tests.integration.conftest import BACKEND_NEUTRAL

NS = "guest"
ACTIONS = "/api/v1/namespaces/_/actions"

ECHO = "def main(args):\n    return args\n"
IDS = "def main(args):\n    return {'ids': [m['messageId'] for m in args['messages']]}\n"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.2)


async def _action(http: aiohttp.ClientSession, name: str, code: str, **annotations: Any) -> None:
    body = {"exec": {"kind": "python:3.11", "code": code},
            "annotations": [{"key": k, "value": v} for k, v in annotations.items()]}
    async with http.put(f"{ACTIONS}/{name}", json=body) as resp:
        assert resp.status == 200, await resp.text()


async def _trigger(
    store: Store, name: str, rules: dict[str, tuple[str, str]], **params: Any
) -> None:
    """``rules``: rule name -> (action name, "active" | "inactive")."""
    doc = TriggerDoc(
        namespace=NS, name=name, parameters=[KeyValue(key=k, value=v) for k, v in params.items()],
        rules={f"{NS}/{rule}": RuleLink(action=EntityRef(path=NS, name=action), status=status)
               for rule, (action, status) in rules.items()},
    )
    assert await store.put_entity("triggers", NS, name, doc, updated=now_ms(), replaces=None)


async def _records(store: Store, name: str) -> list[ActivationRecord]:
    return await store.list_records(NS, name=name, limit=100_000)


async def _processed_ids(store: Store, action: str) -> list[str]:
    """Message ids the action's successful activations reported, duplicates included."""
    return [i for r in await _records(store, action) if r.response.success
            for i in r.response.result["ids"]]


@pytest.fixture
async def amqp(cluster: Cluster) -> AsyncIterator[AbstractChannel]:
    """A producer's own connection, with publisher confirms."""
    connection = await aio_pika.connect(cluster.settings.amqp_url)
    yield await connection.channel(publisher_confirms=True)
    await connection.close()


@pytest.fixture
async def feeds(broker: Broker, store: Store) -> AsyncIterator[Callable[..., Awaitable[FeedDoc]]]:
    """Create feeds the way the gateway does (doc in Redis, then ``FeedChanged``); every feed
    a test created is deleted afterwards so no initializer keeps consuming for it."""
    created: list[str] = []

    async def create(**fields: Any) -> FeedDoc:
        doc = FeedDoc(namespace=NS, **{"created": now_ms(), **fields})
        await store.put_feed(doc)
        created.append(doc.key)
        await broker.publish(FeedChanged(key=doc.key), exchange=FEEDS_EXCHANGE, routing_key="")
        return doc

    yield create
    for key in created:
        await store.delete_feed(key)
        await broker.publish(FeedChanged(key=key, deleted=True), exchange=FEEDS_EXCHANGE,
                             routing_key="")


async def _publish(
    channel: AbstractChannel, queue: str, bodies: list[Any], *, ids: list[str] | None = None
) -> None:
    await channel.declare_queue(queue, durable=True)
    for start in range(0, len(bodies), 100):
        await asyncio.gather(*(
            channel.default_exchange.publish(
                aio_pika.Message(json.dumps(body).encode(), content_type="application/json",
                                 message_id=ids[i] if ids else None,
                                 delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key=queue)
            for i, body in enumerate(bodies[start:start + 100], start)))


async def _drain(channel: AbstractChannel, queue: str) -> list[AbstractIncomingMessage]:
    q = await channel.declare_queue(queue, durable=True)
    out = []
    while (message := await q.get(fail=False)) is not None:
        await message.ack()
        out.append(message)
    return out


async def _depth(channel: AbstractChannel, queue: str) -> int:
    q = await channel.declare_queue(queue, passive=True)
    return int(q.declaration_result.message_count or 0)


# -- queue feeds -----------------------------------------------------------------------------


async def test_queue_feed_runs_every_message_once(
    http: aiohttp.ClientSession, store: Store, amqp: AbstractChannel, feeds: Any
) -> None:
    action, trigger, queue = _name("ids"), _name("t"), _name("q")
    await _action(http, action, IDS)
    await _trigger(store, trigger, {_name("r"): (action, "active")})
    ids = [uuid.uuid4().hex for _ in range(1000)]
    await amqp.declare_queue(queue, durable=True)
    await feeds(trigger=trigger, kind="queue", queue=queue, batch_size=10, max_concurrency=4)
    await _publish(amqp, queue, [{"n": n} for n in range(1000)], ids=ids)

    async def all_processed() -> bool:
        return len(set(await _processed_ids(store, action))) >= 1000

    await _until(all_processed, 90, "1000 processed messages")
    records = await _records(store, action)
    assert all(r.response.success for r in records)
    processed = await _processed_ids(store, action)
    assert sorted(processed) == sorted(ids)  # each exactly once: nothing failed, nothing lost
    assert max(len(r.response.result["ids"]) for r in records) <= 10
    # One trigger activation per batch, each caused exactly one rule activation.
    assert await store.count_records(NS, name=trigger) == len(records)
    assert {r.cause for r in records} == {r.activationId for r in await _records(store, trigger)}

    async def queue_empty() -> bool:
        return await _depth(amqp, queue) == 0

    await _until(queue_empty, 10, "every message acked")
    assert await _depth(amqp, f"{queue}.dlq") == 0


async def test_failing_messages_end_in_the_dead_letter_queue(
    http: aiohttp.ClientSession, store: Store, amqp: AbstractChannel, feeds: Any
) -> None:
    action, trigger, queue = _name("odd"), _name("t"), _name("q")
    await _action(http, action, (
        "def main(args):\n"
        "    odd = [m['messageId'] for m in args['messages'] if m['body']['n'] % 2]\n"
        "    if odd:\n"
        "        return {'error': 'odd numbers: ' + ','.join(odd)}\n"
        "    return {'ids': [m['messageId'] for m in args['messages']]}\n"))
    await _trigger(store, trigger, {_name("r"): (action, "active")})
    ids = [f"msg-{n}" for n in range(20)]
    await amqp.declare_queue(queue, durable=True)
    await feeds(trigger=trigger, kind="queue", queue=queue, batch_size=1, max_concurrency=4,
                max_retries=2)
    await _publish(amqp, queue, [{"n": n} for n in range(20)], ids=ids)

    dead: list[AbstractIncomingMessage] = []

    async def all_dead() -> bool:
        dead.extend(await _drain(amqp, f"{queue}.dlq"))
        return len(dead) >= 10

    await _until(all_dead, 60, "10 dead letters")
    assert sorted(m.message_id or "" for m in dead) == sorted(ids[1::2])
    for message in dead:
        headers = message.headers
        assert headers["x-ft-attempts"] == 3  # the first attempt and max_retries=2 retries
        assert "odd numbers" in json.loads(headers["x-ft-error"])["error"]
        assert headers["x-ft-trigger"] == f"/{NS}/{trigger}"
        failed = await store.get_record(str(headers["x-ft-activation-id"]))
        assert failed is not None and not failed.response.success
        assert json.loads(message.body)["n"] % 2 == 1

    async def evens_done() -> bool:
        return len(await _processed_ids(store, action)) >= 10

    await _until(evens_done, 30, "the even messages")
    assert sorted(await _processed_ids(store, action)) == sorted(ids[0::2])
    # 10 successes, and 3 failed attempts for each odd message.
    assert Counter(r.response.success for r in await _records(store, action)) == {
        True: 10, False: 30}


async def test_batch_item_failures_retry_only_the_named_items(
    http: aiohttp.ClientSession, store: Store, amqp: AbstractChannel, feeds: Any
) -> None:
    action, trigger, queue = _name("partial"), _name("t"), _name("q")
    await _action(http, action, (
        "def main(args):\n"
        "    ms = args['messages']\n"
        "    failed = [{'itemIdentifier': m['messageId']} for m in ms\n"
        "              if m['body']['n'] % 2 and m['attempt'] == 1]\n"
        "    return {'seen': [[m['messageId'], m['attempt']] for m in ms],\n"
        "            'batchItemFailures': failed}\n"))
    await _trigger(store, trigger, {_name("r"): (action, "active")})
    await _publish(amqp, queue, [{"n": n} for n in range(10)], ids=[f"m{n}" for n in range(10)])
    await feeds(trigger=trigger, kind="queue", queue=queue, batch_size=5,
                max_batching_window_ms=300, max_concurrency=1, max_retries=2)

    async def seen() -> list[tuple[str, int]]:
        return [(i, a) for r in await _records(store, action) for i, a in r.response.result["seen"]]

    async def done() -> bool:
        return len(await seen()) >= 15

    await _until(done, 30, "10 first attempts and 5 retries")
    await asyncio.sleep(0.5)  # nothing more may come
    expected = [(f"m{n}", 1) for n in range(10)] + [(f"m{n}", 2) for n in range(1, 10, 2)]
    assert sorted(await seen()) == sorted(expected)
    assert await _depth(amqp, queue) == 0
    assert await _depth(amqp, f"{queue}.dlq") == 0


async def test_batches_gather_up_to_batch_size_within_the_window(
    http: aiohttp.ClientSession, store: Store, amqp: AbstractChannel, feeds: Any
) -> None:
    action, trigger, queue = _name("sizes"), _name("t"), _name("q")
    await _action(http, action, "def main(args):\n    return {'size': len(args['messages'])}\n")
    await _trigger(store, trigger, {_name("r"): (action, "active")})
    await _publish(amqp, queue, [{"n": n} for n in range(25)])
    await feeds(trigger=trigger, kind="queue", queue=queue, batch_size=10,
                max_batching_window_ms=1000, max_concurrency=1)

    async def sizes() -> list[int]:
        return sorted(r.response.result["size"] for r in await _records(store, action))

    async def done() -> bool:
        return sum(await sizes()) >= 25

    await _until(done, 30, "25 messages in batches")
    # Full batches while messages wait; the remainder goes when the window closes.
    assert await sizes() == [5, 10, 10]


@BACKEND_NEUTRAL
async def test_feed_moves_to_another_initializer_when_its_owner_is_killed(
    http: aiohttp.ClientSession, store: Store, amqp: AbstractChannel, feeds: Any,
    cluster: Cluster, initializers: ExtraInitializers,
) -> None:
    await initializers.start()
    action, trigger, queue = _name("slow"), _name("t"), _name("q")
    await _action(http, action, (
        "import time\n"
        "def main(args):\n"
        "    time.sleep(0.1)\n"
        "    return {'ids': [m['messageId'] for m in args['messages']]}\n"))
    await _trigger(store, trigger, {_name("r"): (action, "active")})
    ids = [uuid.uuid4().hex for _ in range(400)]
    await amqp.declare_queue(queue, durable=True)
    doc = await feeds(trigger=trigger, kind="queue", queue=queue, batch_size=5,
                      max_concurrency=2)
    await _publish(amqp, queue, [{"n": n} for n in range(400)], ids=ids)

    async def some_processed() -> bool:
        return len(set(await _processed_ids(store, action))) >= 80

    await _until(some_processed, 60, "the feed to get going")
    owner = (await store.redis.get(f"ft:lease:feed:{doc.key}")).decode()
    pid = int(owner.split("-")[1])
    ours = [p for p in [*cluster.processes.procs.values(), *initializers.started]
            if p.pid == pid]
    assert ours, f"the feed's owner {owner} is not a process this test started"
    os.kill(pid, signal.SIGKILL)
    await asyncio.to_thread(ours[0].wait)
    done_at_kill = len(set(await _processed_ids(store, action)))
    await initializers.start(keep=True)  # the cluster keeps this one for later tests

    async def all_processed() -> bool:
        return set(await _processed_ids(store, action)) == set(ids)

    await _until(all_processed, 90, "every message after the owner died")
    assert done_at_kill < len(ids), "the run finished before the kill: nothing was tested"
    new_owner = (await store.redis.get(f"ft:lease:feed:{doc.key}")).decode()
    assert new_owner != owner
    assert all(r.response.success for r in await _records(store, action))
    assert await _depth(amqp, f"{queue}.dlq") == 0


# -- alarms ----------------------------------------------------------------------------------


def test_cron_and_interval_schedules() -> None:
    def at(text: str) -> int:
        return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)

    def ticks(expr: str, after: str, upto: str) -> list[str]:
        return [dt.datetime.fromtimestamp(t / 1000, dt.UTC).strftime("%a %d %H:%M")
                for t in cron_ticks(Cron.parse(expr), at(after), at(upto))]

    assert ticks("*/20 * * * *", "2026-01-05 10:00", "2026-01-05 11:00") == [
        "Mon 05 10:20", "Mon 05 10:40", "Mon 05 11:00"]
    assert ticks("0 9-17/4 * * mon-fri", "2026-01-09 00:00", "2026-01-12 10:00") == [
        "Fri 09 09:00", "Fri 09 13:00", "Fri 09 17:00", "Mon 12 09:00"]
    # Both day fields restricted: either one matches (the 1st, or any Sunday).
    assert ticks("30 6 1 * 0", "2026-02-27 00:00", "2026-03-09 00:00") == [
        "Sun 01 06:30", "Sun 08 06:30"]
    assert ticks("5,10 0 * jan 7", "2026-01-04 00:00", "2026-01-04 01:00") == [
        "Sun 04 00:05", "Sun 04 00:10"]
    # Six fields: the first is the second (upstream's alarms feed, node-cron).
    assert [t - at("2026-01-05 10:00") for t in cron_ticks(
        Cron.parse("*/20 * * * * *"), at("2026-01-05 10:00"), at("2026-01-05 10:01"))] == [
        20_000, 40_000, 60_000]
    assert ticks("30 0 12 * * *", "2026-01-05 00:00", "2026-01-06 23:59") == [
        "Mon 05 12:00", "Tue 06 12:00"]
    with pytest.raises(ValueError):
        Cron.parse("61 * * * *")
    with pytest.raises(ValueError):
        Cron.parse("60 * * * * *")
    assert list(interval_ticks(1000, 3000, 1000, 10_000)) == [4000, 7000, 10_000]
    assert list(interval_ticks(1000, 3000, 4000, 9999)) == [7000]


@BACKEND_NEUTRAL
async def test_interval_alarm_fires_once_per_tick_across_initializers(
    http: aiohttp.ClientSession, store: Store, feeds: Any, initializers: ExtraInitializers,
) -> None:
    await initializers.start()  # with the cluster's own: two initializers evaluate the alarm
    action, trigger = _name("tick"), _name("t")
    await _action(http, action, ECHO)
    await _trigger(store, trigger, {_name("r"): (action, "active")})
    period_ms, ticks = 1800, 4
    created = now_ms()
    await feeds(trigger=trigger, kind="interval", minutes=period_ms / 60_000, created=created,
                stop_date=created + ticks * period_ms + period_ms // 2,
                trigger_payload={"kind": "tick"})
    await asyncio.sleep((ticks + 1) * period_ms / 1000 + 1.5)
    fired = await _records(store, trigger)
    assert sorted(r.start for r in fired) == [created + k * period_ms for k in range(1, 5)]
    assert all(r.response.result == {"kind": "tick"} for r in fired)

    async def actions_ran() -> bool:
        return len(await _records(store, action)) >= ticks

    await _until(actions_ran, 20, "one action run per tick")
    runs = await _records(store, action)
    assert len(runs) == ticks
    assert {r.cause for r in runs} == {r.activationId for r in fired}
    assert all(r.response.result["kind"] == "tick" for r in runs)


@BACKEND_NEUTRAL
async def test_six_field_cron_alarm_fires_on_its_seconds(
    http: aiohttp.ClientSession, store: Store, feeds: Any,
) -> None:
    """``*/2 * * * * *``: every even second, as upstream's alarms feed reads six fields."""
    action, trigger = _name("sec"), _name("t")
    await _action(http, action, ECHO)
    await _trigger(store, trigger, {_name("r"): (action, "active")})
    created = now_ms()
    stop = created + 6_000
    await feeds(trigger=trigger, kind="alarm", cron="*/2 * * * * *", created=created,
                stop_date=stop, trigger_payload={"kind": "second"})
    await asyncio.sleep((stop - now_ms()) / 1000 + 1.5)
    starts = sorted(r.start for r in await _records(store, trigger))
    expected = list(range((created // 2000 + 1) * 2000, stop + 1, 2000))
    # Each even second once; the first may pass before the initializer has read the feed.
    assert starts == expected[len(expected) - len(starts):], (starts, expected)
    assert len(starts) >= len(expected) - 1 >= 2


# -- fires -----------------------------------------------------------------------------------


async def _publish_fire(broker: Broker, trigger: str, payload: dict[str, Any]) -> str:
    """As the gateway publishes an accepted fire."""
    fire = TriggerFire(activation_id=new_activation_id(), namespace=NS, trigger=trigger,
                       subject=NS, payload=payload, fired_at=now_ms())
    await broker.publish(fire, exchange=EVENTS, routing_key=f"{NS}.{trigger}",
                         message_id=fire.activation_id)
    return fire.activation_id


async def _record(store: Store, aid: str, timeout: float = 30) -> ActivationRecord:
    found: list[ActivationRecord] = []

    async def stored() -> bool:
        record = await store.get_record(aid)
        if record is not None:
            found.append(record)
        return record is not None

    await _until(stored, timeout, f"record {aid}")
    return found[0]


async def test_trigger_with_two_rules_runs_both_actions_and_not_the_disabled_one(
    http: aiohttp.ClientSession, store: Store, broker: Broker
) -> None:
    a1, a2, off, trigger = _name("a1"), _name("a2"), _name("off"), _name("t")
    for action in (a1, a2, off):
        await _action(http, action, ECHO)
    r1, r2, r3 = _name("r1"), _name("r2"), _name("r3")
    await _trigger(store, trigger, {r1: (a1, "active"), r2: (a2, "active"),
                                    r3: (off, "inactive")}, origin="trigger", level=1)
    aid = await _publish_fire(broker, trigger, {"level": 5})
    fired = await _record(store, aid)
    assert fired.name == trigger and fired.end == 0
    assert fired.response.success and fired.response.result == {"level": 5}
    logs = {entry["rule"]: entry for entry in map(json.loads, fired.logs)}
    assert set(logs) == {f"{NS}/{r1}", f"{NS}/{r2}"}
    for rule, action in ((r1, a1), (r2, a2)):
        entry = logs[f"{NS}/{rule}"]
        assert entry["statusCode"] == 0 and entry["success"] and entry["action"] == f"{NS}/{action}"
        run = await _record(store, entry["activationId"])
        assert run.name == action and run.cause == aid
        # Trigger parameters < action parameters < the fire's payload.
        assert run.response.result == {"origin": "trigger", "level": 5}
    await asyncio.sleep(1)
    assert await store.count_records(NS, name=off) == 0


async def test_disabled_rule_runs_nothing_and_a_missing_action_is_logged(
    http: aiohttp.ClientSession, store: Store, broker: Broker
) -> None:
    action, trigger = _name("off"), _name("t")
    await _action(http, action, ECHO)
    await _trigger(store, trigger, {_name("r"): (action, "inactive")})
    disabled = await _publish_fire(broker, trigger, {"x": 1})

    broken, rule = _name("t"), _name("r")
    await _trigger(store, broken, {rule: ("no-such-action", "active")})
    fired = await _record(store, await _publish_fire(broker, broken, {}))
    assert [json.loads(line) for line in fired.logs] == [{
        "statusCode": 1, "success": False, "error": "The requested resource does not exist.",
        "rule": f"{NS}/{rule}", "action": f"{NS}/no-such-action"}]
    await asyncio.sleep(1)
    assert await store.get_record(disabled) is None  # no active rule: no activation at all
    assert await store.count_records(NS, name=action) == 0


async def test_native_producer_fires_a_trigger_through_ft_events(
    http: aiohttp.ClientSession, store: Store, amqp: AbstractChannel
) -> None:
    action, trigger = _name("native"), _name("t")
    await _action(http, action, ECHO)
    await _trigger(store, trigger, {_name("r"): (action, "active")}, source="trigger")
    events = await amqp.get_exchange(EVENTS)
    aid = new_activation_id()
    await events.publish(aio_pika.Message(json.dumps({"x": 1}).encode(),
                                          content_type="application/json", message_id=aid),
                         routing_key=f"{NS}.{trigger}")
    fired = await _record(store, aid)  # the producer's message id names the trigger activation
    run = await _record(store, json.loads(fired.logs[0])["activationId"])
    assert run.response.result == {"source": "trigger", "x": 1}

    # No content type, no usable message id, not an object: wrapped as {"payload": ...}.
    await events.publish(aio_pika.Message(b"[1, 2]", message_id="not-an-id"),
                         routing_key=f"{NS}.{trigger}")

    async def second_run() -> bool:
        return len(await _records(store, action)) >= 2

    await _until(second_run, 30, "the second fire")
    results = [r.response.result for r in await _records(store, action)]
    assert {"source": "trigger", "payload": [1, 2]} in results


# -- destinations ----------------------------------------------------------------------------


async def test_on_failure_destination_action_receives_the_record(
    http: aiohttp.ClientSession, store: Store
) -> None:
    dest, failing = _name("dest"), _name("fails")
    await _action(http, dest, ECHO)
    await _action(http, failing, "def main(args):\n    raise ValueError('nope')\n",
                  onFailure=f"/{NS}/{dest}", maxRetries=0)
    async with http.post(f"{ACTIONS}/{failing}", json={"n": 3}) as resp:
        assert resp.status == 202
        aid = (await resp.json())["activationId"]

    async def delivered() -> bool:
        return await store.count_records(NS, name=dest) >= 1

    await _until(delivered, 30, "the destination's activation")
    [run] = await _records(store, dest)
    assert run.cause == aid and run.response.success
    record = run.response.result
    assert record["activation_id"] == aid and record["condition"] == "RetriesExhausted"
    assert record["action"] == f"/{NS}/{failing}" and record["request_payload"] == {"n": 3}
    assert record["response"]["result"] == {"error": "nope"}


async def test_destination_to_a_queue(broker: Broker, amqp: AbstractChannel) -> None:
    """The consumer alone: a ``Destination`` as the invoker publishes it."""
    queue, aid = _name("dest-q"), new_activation_id()
    record = DestinationRecord(
        timestamp=now_ms(), activation_id=aid, action=f"/{NS}/x", condition="Success",
        attempts=1, request_payload={"a": 1},
        response={"status": "success", "statusCode": 0, "success": True, "result": {}})
    await broker.publish(Destination(target=f"queue:{queue}", namespace=NS, subject=NS,
                                     record=record), routing_key="ft.destinations")
    messages: list[AbstractIncomingMessage] = []

    async def arrived() -> bool:
        messages.extend(await _drain(amqp, queue))
        return bool(messages)

    await _until(arrived, 20, "the record on the destination queue")
    [message] = messages
    assert message.content_type == "application/json"
    assert DestinationRecord.model_validate_json(message.body) == record


@BACKEND_NEUTRAL
async def test_once_alarm_fires_at_its_date_then_deletes_its_trigger(
    cluster: Cluster,
) -> None:
    """``/whisk.system/alarms/once`` with ``deleteAfterFire: true``, created the way wsk does
    (the feed action invoked with the trigger's name and the caller's key)."""
    async with AsyncClient(cluster.api_host, cluster.auth) as client:
        action, trigger, rule = _name("once"), _name("t"), _name("r")
        await client.actions.create(action, ECHO)
        await client.triggers.create(trigger)
        await client.rules.create(rule, trigger, action)
        feed = "/whisk.system/alarms/once"
        with pytest.raises(ActivationFailed, match="'date' must be in the future"):
            await client.actions.invoke(feed, {
                "lifecycleEvent": "CREATE", "triggerName": f"/_/{trigger}",
                "authKey": cluster.auth, "date": now_ms() - 1000})
        due = now_ms() + 1200
        await client.actions.invoke(feed, {
            "lifecycleEvent": "CREATE", "triggerName": f"/_/{trigger}",
            "authKey": cluster.auth, "date": due, "deleteAfterFire": "true",
            "trigger_payload": {"once": True}})

        async def trigger_gone() -> bool:
            try:
                await client.triggers.get(trigger)
            except NotFound:
                return True
            return False

        await _until(trigger_gone, 30, f"trigger {trigger} deleted after its fire")
        with pytest.raises(NotFound):
            await client.rules.get(rule)
        ran: list[dict[str, Any]] = []

        async def action_ran() -> bool:
            ran[:] = await client.activations.list(action, docs=True)
            return bool(ran)

        await _until(action_ran, 30, f"{action} to run")
        assert [r["response"]["result"]["once"] for r in ran] == [True]
        assert ran[0]["start"] >= due
        await client.actions.delete(action)
