"""Lambda's asynchronous invocation model on non-blocking invokes: retries with backoff,
destinations, and completion events any AMQP consumer can read."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aio_pika
import aiohttp

from bus.store import Store
from tests.cluster_fixtures import Cluster

ACTIONS = "/api/v1/namespaces/_/actions"
FAIL = "def main(args):\n    raise RuntimeError('always fails')\n"
OK = "def main(args):\n    return {'got': args.get('n')}\n"


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _create(http: aiohttp.ClientSession, name: str, code: str, **annotations: Any) -> None:
    body = {"exec": {"kind": "python:3.11", "code": code},
            "annotations": [{"key": k, "value": v} for k, v in annotations.items()]}
    async with http.put(f"{ACTIONS}/{name}", json=body) as resp:
        assert resp.status == 200, await resp.text()


async def _fire_and_forget(http: aiohttp.ClientSession, name: str, params: Any = None) -> str:
    async with http.post(f"{ACTIONS}/{name}", json=params or {}) as resp:
        assert resp.status == 202
        return str((await resp.json())["activationId"])


async def _final_record(store: Store, aid: str, timeout: float = 30) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        record = await store.get_record(aid)
        if record is not None:
            return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"no record for {aid}")


async def test_failed_async_invoke_is_retried_then_recorded_once(
    http: aiohttp.ClientSession, store: Store
) -> None:
    name = _name("retry")
    await _create(http, name, FAIL, maxRetries=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    aid = await _fire_and_forget(http, name)
    # No record while retries remain: the one record is the final answer.
    await asyncio.sleep(0.1)
    assert await store.get_record(aid) is None
    record = await _final_record(store, aid)
    assert record.attempts == 3
    assert record.response.result == {"error": "always fails"}
    # Backoff 200 ms then 400 ms before the second and third attempts.
    assert loop.time() - started >= 0.6


async def test_no_retries_when_max_retries_is_zero_or_the_call_is_blocking(
    http: aiohttp.ClientSession, store: Store
) -> None:
    name = _name("noretry")
    await _create(http, name, FAIL, maxRetries=0)
    record = await _final_record(store, await _fire_and_forget(http, name))
    assert record.attempts == 1

    retrying = _name("blocking")
    await _create(http, retrying, FAIL, maxRetries=2)
    async with http.post(f"{ACTIONS}/{retrying}", params={"blocking": "true"}, json={}) as r:
        assert r.status == 502
        body = await r.json()
    stored = await store.get_record(body["activationId"])
    assert stored is not None and stored.attempts == 1


async def test_on_failure_queue_destination_receives_the_invocation_record(
    http: aiohttp.ClientSession, cluster: Cluster
) -> None:
    queue_name = _name("failures")
    name = _name("dest")
    await _create(http, name, FAIL, maxRetries=1, onFailure=f"queue:{queue_name}")
    connection = await aio_pika.connect(cluster.settings.amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True)
        aid = await _fire_and_forget(http, name, {"n": 7})
        message = None
        for _ in range(300):
            message = await queue.get(fail=False)
            if message is not None:
                break
            await asyncio.sleep(0.1)
        assert message is not None, "no destination record arrived"
        await message.ack()
        record = json.loads(message.body)
        assert record["activation_id"] == aid
        assert record["condition"] == "RetriesExhausted"
        assert record["attempts"] == 2
        assert record["request_payload"] == {"n": 7}
        assert record["response"]["result"] == {"error": "always fails"}
    finally:
        await connection.close()


async def test_every_finished_activation_is_published_as_an_event(
    http: aiohttp.ClientSession, cluster: Cluster
) -> None:
    name = _name("events")
    await _create(http, name, OK)
    connection = await aio_pika.connect(cluster.settings.amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange("ft.activation-events")
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key=f"guest.{name}.*")
        aid = await _fire_and_forget(http, name, {"n": 1})
        async with queue.iterator() as messages:
            async with asyncio.timeout(30):
                async for message in messages:
                    await message.ack()
                    break
        assert message.routing_key == f"guest.{name}.success"
        assert message.content_type == "application/json"
        event = json.loads(message.body)
        assert event["activationId"] == aid
        assert event["response"]["result"] == {"got": 1}
    finally:
        await connection.close()
