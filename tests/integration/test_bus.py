"""The bus contracts against the real Redis and RabbitMQ."""

from __future__ import annotations

import asyncio

import pytest
from aio_pika.abc import AbstractIncomingMessage

from bus.broker import Broker, Unroutable, settle
from bus.codec import unpack
from bus.ids import new_activation_id, now_ms
from bus.models import (
    ActionDoc,
    ActionExec,
    ActivationRecord,
    ActivationResponse,
    Heartbeat,
    StatusCode,
)
from bus.store import Store
from gateway.activation_watch import ActivationWatch

# Its own namespace: these records (some dated in the future) must not show up as the
# newest activations of the namespace the end-to-end tests use.
NS = "bus-tests"


def _record(activation_id: str, result: dict, start: int, name: str = "hello") -> ActivationRecord:
    return ActivationRecord(
        namespace=NS, name=name, version="0.0.1", subject="guest",
        activationId=activation_id, start=start, end=start + 5,
        response=ActivationResponse(status_code=StatusCode.SUCCESS, result=result),
    )


async def test_first_record_wins(store: Store) -> None:
    aid = new_activation_id()
    assert await store.write_record(_record(aid, {"n": 1}, now_ms()))
    assert not await store.write_record(_record(aid, {"n": 2}, now_ms()))
    stored = await store.get_record(aid)
    assert stored is not None and stored.response.result == {"n": 1}
    assert await store.count_records(NS, name="hello") >= 1


async def test_records_list_newest_first_with_range(store: Store) -> None:
    base = now_ms() + 10_000_000  # clear of other tests' records
    ids = [new_activation_id() for _ in range(3)]
    for i, aid in enumerate(ids):
        await store.write_record(_record(aid, {"i": i}, base + i, name="ranged"))
    listed = await store.list_records(NS, name="ranged", limit=10)
    assert [r.activationId for r in listed] == list(reversed(ids))
    window = await store.list_records(NS, name="ranged", since=base + 1, upto=base + 1)
    assert [r.activationId for r in window] == [ids[1]]


async def test_entity_replace_detects_concurrent_change(store: Store) -> None:
    doc = ActionDoc(namespace="guest", name="cas", exec=ActionExec(kind="python:3.11"), updated=1)
    assert await store.put_entity("actions", "guest", "cas", doc, 1, replaces=None)
    assert not await store.put_entity("actions", "guest", "cas", doc, 1, replaces=None)
    v2 = doc.model_copy(update={"version": "0.0.2", "updated": 2})
    assert await store.put_entity("actions", "guest", "cas", v2, 2, replaces=doc)
    # a writer still holding the old document loses
    assert not await store.put_entity("actions", "guest", "cas", v2, 3, replaces=doc)
    got = await store.get_action("guest", "cas")
    assert got is not None and got.version == "0.0.2"
    deleted = await store.delete_entity("actions", "guest", "cas", ActionDoc)
    assert deleted is not None and await store.get_action("guest", "cas") is None


async def test_code_is_content_addressed(store: Store) -> None:
    d1 = await store.put_code("def main(a): return a")
    d2 = await store.put_code("def main(a): return a")
    assert d1 == d2 and await store.get_code(d1) == "def main(a): return a"


async def test_confirmed_publish_reaches_fanout_consumer(broker: Broker) -> None:
    got: asyncio.Queue[Heartbeat] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await got.put(unpack(message.body, Heartbeat))
        await settle(message)

    await broker.consume(None, on_message, prefetch=10, bind_to="ft.health")
    # Draining, so the session's real initializer never places work on this made-up invoker.
    beat = Heartbeat(invoker_id="i0", at=now_ms(), user_memory=1024, free_memory=512, busy=1,
                     queued=0, warm=["guest/a@0.0.1#x"], draining=True)
    await broker.publish(beat, routing_key="", exchange="ft.health", persistent=False,
                         mandatory=False)
    received = await asyncio.wait_for(got.get(), 5)
    assert received == beat


async def test_advisory_publish_arrives_with_its_properties(broker: Broker) -> None:
    got: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await got.put(message)

    await broker.consume(None, on_message, prefetch=10, bind_to="ft.health", auto_ack=True)
    for n in range(3):  # several in one turn, none waiting for the writer
        await broker.publish_bytes(
            b'{"n":%d}' % n, content_type="application/json", exchange="ft.health",
            routing_key="", message_id=f"m{n}", message_type="probe", headers={"h": n},
            persistent=False, mandatory=False, expiration=30, confirm=False)
    for n in range(3):
        message = await asyncio.wait_for(got.get(), 5)
        assert message.body == b'{"n":%d}' % n and message.message_id == f"m{n}"
        assert (message.content_type, message.type, message.headers) == (
            "application/json", "probe", {"h": n})
        assert message.expiration == 30 and message.delivery_mode == 1
    with pytest.raises(ValueError):  # unroutable would go unnoticed without a confirm
        await broker.publish_bytes(b"", content_type=None, routing_key="x", confirm=False)


async def test_records_written_together_keep_first_write_wins(store: Store) -> None:
    taken, fresh = new_activation_id(), new_activation_id()
    assert await store.write_record(_record(taken, {"n": 1}, now_ms()))
    stored = await store.write_records([
        _record(taken, {"n": 2}, now_ms()), _record(fresh, {"n": 3}, now_ms()),
        _record(fresh, {"n": 4}, now_ms())])
    assert stored == [False, True, False]
    assert (await store.get_record(taken)).response.result == {"n": 1}  # type: ignore[union-attr]
    assert (await store.get_record(fresh)).response.result == {"n": 3}  # type: ignore[union-attr]
    listed = {r.activationId for r in await store.list_records(NS, name="hello", limit=50)}
    assert {taken, fresh} <= listed


async def test_unroutable_publish_raises_instead_of_vanishing(broker: Broker) -> None:
    beat = Heartbeat(invoker_id="x", at=now_ms(), user_memory=1, free_memory=1, busy=0, queued=0)
    with pytest.raises(Unroutable):
        await broker.publish(beat, routing_key="ft.invoker.no-such-invoker")


async def test_backlog_counts_waiting_messages_and_survives_a_missing_queue(
    broker: Broker,
) -> None:
    name = await broker.declare_invoker_queue(f"backlog-{new_activation_id()[:8]}")
    beat = Heartbeat(invoker_id="x", at=now_ms(), user_memory=1, free_memory=1, busy=0, queued=0)
    for _ in range(3):
        await broker.publish(beat, routing_key=name)
    assert await broker.backlog(name) == 3
    await broker.publish(beat, routing_key=name)
    assert await broker.backlog(name) == 4  # asked again, not remembered
    with pytest.raises(Exception):  # noqa: B017 - aiormq's ChannelNotFoundEntity
        await broker.backlog("ft.invoker.no-such-invoker")
    assert await broker.backlog(name) == 4  # the closed channel was replaced
    await broker.publish(beat, routing_key=name)  # and publishing was never affected


async def test_activation_watch_wakes_on_the_completion_event(broker: Broker) -> None:
    """A waiter answers when ``ft.activation-events`` announces its activation, not by
    reading the store again (the re-read is an hour away here), and only its own wakes it."""
    watch = ActivationWatch(broker, recheck_s=3600)
    await watch.start()
    try:
        mine, other = new_activation_id(), new_activation_id()
        written: dict[str, ActivationRecord] = {}
        looked = asyncio.Event()

        async def lookup() -> ActivationRecord | None:
            looked.set()
            return written.get(mine)

        waiting = asyncio.create_task(watch.wait(NS, mine, 20, lookup))
        await looked.wait()  # bound, and looked once
        await broker.announce_activation(_record(other, {"n": 0}, now_ms()))
        written[mine] = _record(mine, {"n": 1}, now_ms())
        await broker.announce_activation(written[mine])
        found = await asyncio.wait_for(waiting, 10)
        assert found is not None and found.response.result == {"n": 1}

        async def absent() -> ActivationRecord | None:
            return None

        # A record that never comes: None once the wait expired.
        assert await watch.wait(NS, new_activation_id(), 0.2, absent) is None
    finally:
        await watch.close()
