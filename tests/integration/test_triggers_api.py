"""Triggers, rules, fires and the built-in feed actions against the real Redis and RabbitMQ:
the gateway runs in the test's loop on its own vhost (no initializer consumes anything there);
test queues bound to ``ft.events`` and ``ft.feeds`` see what the gateway publishes."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import aiormq
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aiohttp import web

from bus.broker import EVENTS, Broker
from bus.codec import CONTENT_TYPE, unpack
from bus.config import Settings
from bus.events import FEEDS_EXCHANGE, FeedChanged, TriggerFire
from bus.ids import now_ms
from bus.models import NamespaceAuth
from bus.store import Store
from gateway.app import build_app
from gateway.feed_params import FeedError, check_cron
from tests.conftest import fresh_vhost
from tests.integration.test_gateway import Api, Reply, assert_error, create

UNAVAILABLE = (
    "The server is currently unavailable (because it is overloaded or down for maintenance)."
)


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Iterator[Settings]:
    """This module's own vhost, so what reaches ``ft.events`` is only what these tests fire."""
    with fresh_vhost("ft-test-trg") as amqp_url:
        yield settings.model_copy(update={"amqp_url": amqp_url})


@pytest.fixture
async def http(settings: Settings, store: Store, broker: Broker) -> AsyncIterator[
    aiohttp.ClientSession
]:
    runner = web.AppRunner(build_app(settings, store, broker), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as session:
        yield session
    await runner.cleanup()


@pytest.fixture
async def api(http: aiohttp.ClientSession, store: Store) -> Api:
    """A client of a fresh namespace of its own, so lists and counts are exact."""
    ns = f"ns-{uuid.uuid4().hex[:10]}"
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32), namespace=ns)
    await store.put_auth(auth)
    return Api(http, auth.uuid, auth.key, ns)


Listen = Callable[[str, str], Awaitable["asyncio.Queue[AbstractIncomingMessage]"]]


@pytest.fixture
async def listen(broker: Broker) -> AsyncIterator[Listen]:
    """Bind a fresh exclusive queue to an exchange and collect (and ack) what arrives."""
    channels: list[AbstractChannel] = []

    async def bind(exchange: str, routing_key: str) -> asyncio.Queue[AbstractIncomingMessage]:
        channel = await broker.connection.channel()
        channels.append(channel)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=routing_key)
        arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()

        async def on_message(message: AbstractIncomingMessage) -> None:
            await message.ack()
            arrived.put_nowait(message)

        await queue.consume(on_message)
        return arrived

    yield bind
    for channel in channels:
        await channel.close()


async def next_message(
    arrived: asyncio.Queue[AbstractIncomingMessage], timeout: float = 5.0
) -> AbstractIncomingMessage:
    return await asyncio.wait_for(arrived.get(), timeout)


async def assert_nothing_arrives(arrived: asyncio.Queue[AbstractIncomingMessage]) -> None:
    await asyncio.sleep(0.3)
    assert arrived.empty()


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def make_trigger(api: Api, name: str, **body: Any) -> dict[str, Any]:
    reply = await api.call("PUT", f"/api/v1/namespaces/_/triggers/{name}", json=body)
    assert reply.status == 200, reply.body
    return reply.body


async def make_rule(api: Api, name: str, trigger: str, action: str) -> dict[str, Any]:
    reply = await api.call(
        "PUT", f"/api/v1/namespaces/_/rules/{name}", json={"trigger": trigger, "action": action}
    )
    assert reply.status == 200, reply.body
    return reply.body


async def set_state(api: Api, rule: str, status: Any) -> Reply:
    return await api.call("POST", f"/api/v1/namespaces/_/rules/{rule}", json={"status": status})


async def rule_setup(api: Api) -> tuple[str, str, str]:
    """An action, a trigger and an (active) rule between them."""
    action, trigger, rule = new_name("act"), new_name("trg"), new_name("rule")
    await create(api, action)
    await make_trigger(api, trigger)
    await make_rule(api, rule, f"/_/{trigger}", action)
    return action, trigger, rule


# -- triggers -------------------------------------------------------------------------------


async def test_trigger_create_get_update_delete(api: Api) -> None:
    ns, name = api.namespace, new_name("trg")
    path = f"/api/v1/namespaces/_/triggers/{name}"
    created = await make_trigger(api, name)
    assert created == {
        "namespace": ns, "name": name, "version": "0.0.1", "publish": False, "parameters": [],
        "limits": {}, "annotations": [], "updated": created["updated"],
    }
    assert abs(created["updated"] - now_ms()) < 10_000
    assert (await api.call("GET", path)).body == created
    assert_error(await api.call("PUT", path, json={}), 409, "resource already exists")

    body = {
        "parameters": [{"key": "type", "value": "webhook"}],
        "annotations": [{"key": "feed", "value": "/whisk.system/alarms/alarm"}],
        "limits": {"anything": 1}, "publish": True,
    }
    updated = (await api.call("PUT", path, params={"overwrite": "true"}, json=body)).body
    assert updated["version"] == "0.0.2" and updated["publish"] is True
    assert updated["parameters"] == body["parameters"]
    assert updated["annotations"] == body["annotations"]
    assert updated["limits"] == {}
    # Absent fields keep their values; given ones replace them wholesale.
    again = (await api.call("PUT", path, params={"overwrite": "true"},
                            json={"annotations": [{"key": "x", "value": 1}]})).body
    assert again["version"] == "0.0.3" and again["parameters"] == body["parameters"]
    assert again["annotations"] == [{"key": "x", "value": 1}]
    pinned = (await api.call("PUT", path, params={"overwrite": "true"},
                             json={"version": "1.2.3"})).body
    assert pinned["version"] == "1.2.3"

    deleted = await api.call("DELETE", path)
    assert deleted.status == 200 and deleted.body == pinned
    assert_error(await api.call("GET", path), 404, "The requested resource does not exist.")
    assert_error(await api.call("DELETE", path), 404, "The requested resource does not exist.")


async def test_trigger_list_count_and_window(api: Api) -> None:
    names = [new_name("trg") for _ in range(3)]
    for name in names:
        await make_trigger(api, name, annotations=[{"key": "k", "value": name}])
    path = "/api/v1/namespaces/_/triggers"
    listed = (await api.call("GET", path)).body
    assert [t["name"] for t in listed] == names[::-1]  # newest first
    assert listed[0] == {
        "namespace": api.namespace, "name": names[2], "version": "0.0.1", "publish": False,
        "annotations": [{"key": "k", "value": names[2]}], "updated": listed[0]["updated"],
    }
    assert (await api.call("GET", path, params={"count": "true"})).body == {"triggers": 3}
    window = (await api.call("GET", path, params={"limit": "1", "skip": "1"})).body
    assert [t["name"] for t in window] == [names[1]]
    assert_error(await api.call("GET", path, params={"limit": "201"}), 400,
                 "The value '201' is not in the range of 0 to 200 for triggers.")


@pytest.mark.parametrize("feed", [42, "bad name!", "/a/b/c/d", "", None])
async def test_trigger_feed_must_be_a_valid_name(api: Api, feed: Any) -> None:
    name = new_name("trg")
    reply = await api.call("PUT", f"/api/v1/namespaces/_/triggers/{name}",
                           json={"annotations": [{"key": "feed", "value": feed}]})
    if feed is None:  # an annotation without a value names no feed
        assert reply.status == 200
    else:
        assert_error(reply, 400, "Feed name is not valid")


async def test_trigger_bad_bodies(api: Api) -> None:
    path = f"/api/v1/namespaces/_/triggers/{new_name('trg')}"
    reply = await api.call("PUT", path, json={"parameters": {"a": 1}})
    assert reply.status == 400
    assert reply.body["error"].startswith("The request content was malformed:")
    reply = await api.call("PUT", path, json={"limits": [1]})
    assert reply.status == 400
    assert_error(await api.call("PUT", "/api/v1/namespaces/_/triggers/bad%20", json={}), 400,
                 "The name of the entity contains illegal characters.")
    assert_error(await api.call("PUT", "/api/v1/namespaces/guest/triggers/x", json={}), 403,
                 "The supplied authentication is not authorized to access this resource.")


# -- rules ----------------------------------------------------------------------------------


async def test_rule_create_get_list_with_exact_json(api: Api) -> None:
    ns = api.namespace
    action, trigger, rule = new_name("act"), new_name("trg"), new_name("rule")
    await create(api, action)
    await make_trigger(api, trigger)
    created = await make_rule(api, rule, f"/_/{trigger}", action)
    assert created == {
        "namespace": ns, "name": rule, "status": "active", "version": "0.0.1",
        "publish": False, "annotations": [],
        "trigger": {"path": ns, "name": trigger}, "action": {"path": ns, "name": action},
        "updated": created["updated"],
    }
    path = f"/api/v1/namespaces/_/rules/{rule}"
    assert (await api.call("GET", path)).body == created
    linked = (await api.call("GET", f"/api/v1/namespaces/_/triggers/{trigger}")).body
    assert linked["rules"] == {
        f"{ns}/{rule}": {"action": {"path": ns, "name": action}, "status": "active"}
    }
    assert_error(await api.call("PUT", path, json={"trigger": trigger, "action": action}), 409,
                 "resource already exists")

    listed = (await api.call("GET", "/api/v1/namespaces/_/rules")).body
    assert listed == [{k: v for k, v in created.items() if k != "status"}]
    count = await api.call("GET", "/api/v1/namespaces/_/rules", params={"count": "true"})
    assert count.body == {"rules": 1}

    # Fully qualified names with the namespace spelled out, and {path, name} objects, work too.
    other = new_name("rule")
    body = {"trigger": {"path": "_", "name": trigger}, "action": f"/{ns}/{action}",
            "status": "inactive"}  # status in a PUT body is ignored
    reply = await api.call("PUT", f"/api/v1/namespaces/_/rules/{other}", json=body)
    assert reply.status == 200 and reply.body["status"] == "active"
    assert reply.body["trigger"] == {"path": ns, "name": trigger}


async def test_rule_errors(api: Api, store: Store) -> None:
    ns = api.namespace
    action, trigger = new_name("act"), new_name("trg")
    await create(api, action)
    await make_trigger(api, trigger)
    path = f"/api/v1/namespaces/_/rules/{new_name('rule')}"
    missing = "rule requires a valid trigger and a valid action"
    assert_error(await api.call("PUT", path, json={"trigger": trigger}), 400, missing)
    assert_error(await api.call("PUT", path, json={"action": action}), 400, missing)
    assert_error(await api.call("PUT", path, json={}), 400, missing)
    assert_error(await api.call("PUT", path, json={"trigger": "/_/nope", "action": action}),
                 400, f"trigger /{ns}/nope does not exist")
    assert_error(await api.call("PUT", path, json={"trigger": trigger, "action": "nope"}),
                 400, f"action /{ns}/nope does not exist")
    assert_error(await api.call("PUT", path, json={"trigger": "/guest/t", "action": action}),
                 403, "The supplied authentication is not authorized to access this resource.")
    reply = await api.call("PUT", path, json={"trigger": "a/b/c/d", "action": action})
    assert reply.status == 400
    assert reply.body["error"].startswith("The request content was malformed:")
    assert await store.count_entities("rules", ns) == 0
    # Nothing failed half-way: the trigger got no link.
    assert "rules" not in (await api.call("GET", f"/api/v1/namespaces/_/triggers/{trigger}")).body

    assert_error(await set_state(api, "no-such-rule", "active"), 404,
                 "The requested resource does not exist.")
    for bad in ("x", "ACTIVE", 1):
        assert_error(await set_state(api, "no-such-rule", bad), 400,
                     f"'{bad}' is not a recognized rule state, must be one of "
                     "['active', 'inactive']")
    assert_error(await api.call("GET", path), 404, "The requested resource does not exist.")
    assert_error(await api.call("DELETE", path), 404, "The requested resource does not exist.")


async def test_rule_enable_disable(api: Api) -> None:
    ns = api.namespace
    action, trigger, rule = await rule_setup(api)
    path = f"/api/v1/namespaces/_/rules/{rule}"
    trigger_path = f"/api/v1/namespaces/_/triggers/{trigger}"

    disabled = await set_state(api, rule, "inactive")
    assert disabled.status == 200 and disabled.body is None
    assert (await api.call("GET", path)).body["status"] == "inactive"
    links = (await api.call("GET", trigger_path)).body["rules"]
    assert links == {f"{ns}/{rule}": {"action": {"path": ns, "name": action},
                                      "status": "inactive"}}
    assert (await set_state(api, rule, "inactive")).status == 200  # already so: fine

    # The Go client (wsk) sends the whole rule struct with null trigger and action.
    enabled = await api.call("POST", path,
                             json={"status": "active", "trigger": None, "action": None})
    assert enabled.status == 200
    assert (await api.call("GET", path)).body["status"] == "active"
    assert (await api.call("GET", trigger_path)).body["rules"][f"{ns}/{rule}"]["status"] == (
        "active"
    )


async def test_rule_update_keeps_state_and_moves_link(api: Api) -> None:
    ns = api.namespace
    _, first, rule = await rule_setup(api)
    second, other_action = new_name("trg"), new_name("act")
    await make_trigger(api, second)
    await create(api, other_action)
    await set_state(api, rule, "inactive")

    path = f"/api/v1/namespaces/_/rules/{rule}"
    reply = await api.call("PUT", path, params={"overwrite": "true"},
                           json={"trigger": f"/_/{second}", "action": other_action})
    assert reply.status == 200, reply.body
    assert reply.body["version"] == "0.0.2" and reply.body["status"] == "inactive"
    assert reply.body["trigger"] == {"path": ns, "name": second}
    assert reply.body["action"] == {"path": ns, "name": other_action}
    old = (await api.call("GET", f"/api/v1/namespaces/_/triggers/{first}")).body
    assert old["rules"] == {}  # unlinked; the map stays once a rule was ever linked
    new = (await api.call("GET", f"/api/v1/namespaces/_/triggers/{second}")).body
    assert new["rules"] == {f"{ns}/{rule}": {"action": {"path": ns, "name": other_action},
                                             "status": "inactive"}}

    # An update that names neither keeps both, and an active rule stays active.
    await set_state(api, rule, "active")
    reply = await api.call("PUT", path, params={"overwrite": "true"},
                           json={"annotations": [{"key": "a", "value": 1}]})
    assert reply.body["status"] == "active" and reply.body["version"] == "0.0.3"
    assert reply.body["trigger"]["name"] == second


async def test_trigger_update_keeps_rule_links(api: Api) -> None:
    _, trigger, rule = await rule_setup(api)
    path = f"/api/v1/namespaces/_/triggers/{trigger}"
    reply = await api.call("PUT", path, params={"overwrite": "true"},
                           json={"parameters": [{"key": "p", "value": 1}]})
    assert reply.body["rules"][f"{api.namespace}/{rule}"]["status"] == "active"


async def test_concurrent_rules_on_one_trigger_all_link(api: Api) -> None:
    """Every rule rewrites the same trigger document: compare-and-set retries lose none."""
    action, trigger = new_name("act"), new_name("trg")
    await create(api, action)
    await make_trigger(api, trigger)
    rules = [new_name("rule") for _ in range(8)]
    await asyncio.gather(*(make_rule(api, rule, trigger, action) for rule in rules))
    links = (await api.call("GET", f"/api/v1/namespaces/_/triggers/{trigger}")).body["rules"]
    assert sorted(links) == sorted(f"{api.namespace}/{rule}" for rule in rules)
    await asyncio.gather(*(set_state(api, rule, "inactive") for rule in rules[:4]))
    links = (await api.call("GET", f"/api/v1/namespaces/_/triggers/{trigger}")).body["rules"]
    assert sorted(k for k, v in links.items() if v["status"] == "active") == sorted(
        f"{api.namespace}/{rule}" for rule in rules[4:]
    )


async def test_rule_outlives_its_trigger(api: Api) -> None:
    _, trigger, rule = await rule_setup(api)
    path = f"/api/v1/namespaces/_/rules/{rule}"
    assert (await api.call("DELETE", f"/api/v1/namespaces/_/triggers/{trigger}")).status == 200
    got = (await api.call("GET", path)).body
    assert got["status"] == "inactive"
    for state in ("active", "inactive"):
        assert_error(await set_state(api, rule, state), 404,
                     "Only rules with existing triggers can be activated")
    deleted = await api.call("DELETE", path)
    assert deleted.status == 200 and deleted.body == {**got, "status": "inactive"}
    assert_error(await api.call("GET", path), 404, "The requested resource does not exist.")


async def test_rule_delete_unlinks_active_rule(api: Api) -> None:
    _, trigger, rule = await rule_setup(api)
    deleted = await api.call("DELETE", f"/api/v1/namespaces/_/rules/{rule}")
    assert deleted.status == 200 and deleted.body["status"] == "inactive"
    links = (await api.call("GET", f"/api/v1/namespaces/_/triggers/{trigger}")).body["rules"]
    assert links == {}


# -- fire -----------------------------------------------------------------------------------


async def test_fire_without_rules_is_204(api: Api, listen: Listen) -> None:
    trigger = new_name("trg")
    await make_trigger(api, trigger)
    arrived = await listen(EVENTS, f"{api.namespace}.{trigger}")
    path = f"/api/v1/namespaces/_/triggers/{trigger}"
    reply = await api.call("POST", path, json={"a": 1})
    assert reply.status == 204 and reply.body is None
    assert "x-openwhisk-activation-id" not in reply.headers
    await assert_nothing_arrives(arrived)
    assert_error(await api.call("POST", f"/api/v1/namespaces/_/triggers/{new_name('no')}"), 404,
                 "The requested resource does not exist.")
    reply = await api.call("POST", path, json=[1, 2])
    assert reply.status == 400
    assert reply.body["error"].startswith("The request content was malformed:")


async def test_fire_with_active_rule_publishes_trigger_fire(api: Api, listen: Listen) -> None:
    ns = api.namespace
    _, trigger, _ = await rule_setup(api)
    arrived = await listen(EVENTS, f"{ns}.{trigger}")
    before = now_ms()
    reply = await api.call("POST", f"/api/v1/namespaces/_/triggers/{trigger}",
                           json={"temperature": 60}, headers={"X-Custom-Thing": "yes"})
    assert reply.status == 202, reply.body
    activation_id = reply.body["activationId"]
    assert reply.body == {"activationId": activation_id} and len(activation_id) == 32
    assert reply.headers["x-openwhisk-activation-id"] == activation_id

    message = await next_message(arrived)
    assert message.message_id == activation_id and message.content_type == CONTENT_TYPE
    assert message.routing_key == f"{ns}.{trigger}"
    fire = unpack(message.body, TriggerFire)
    assert (fire.activation_id, fire.namespace, fire.trigger, fire.subject) == (
        activation_id, ns, trigger, ns
    )
    assert fire.payload == {"temperature": 60}
    assert fire.headers["x-custom-thing"] == "yes"
    assert fire.headers["content-type"] == "application/json"
    assert "authorization" not in fire.headers
    assert before <= fire.fired_at <= now_ms()

    empty = await api.call("POST", f"/api/v1/namespaces/_/triggers/{trigger}")
    assert empty.status == 202
    assert unpack((await next_message(arrived)).body, TriggerFire).payload == {}


async def test_fire_with_disabled_rule_is_204(api: Api, listen: Listen) -> None:
    _, trigger, rule = await rule_setup(api)
    arrived = await listen(EVENTS, f"{api.namespace}.{trigger}")
    await set_state(api, rule, "inactive")
    reply = await api.call("POST", f"/api/v1/namespaces/_/triggers/{trigger}", json={})
    assert reply.status == 204
    await assert_nothing_arrives(arrived)
    await set_state(api, rule, "active")
    assert (await api.call("POST", f"/api/v1/namespaces/_/triggers/{trigger}")).status == 202
    await next_message(arrived)


async def test_fire_publish_failure_is_503(
    api: Api, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, trigger, _ = await rule_setup(api)

    async def refused(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker gone")

    monkeypatch.setattr(broker, "publish", refused)
    reply = await api.call("POST", f"/api/v1/namespaces/_/triggers/{trigger}")
    assert_error(reply, 503, UNAVAILABLE)


# -- built-in feeds -------------------------------------------------------------------------


async def feed_call(
    api: Api, action: str, event: str, trigger: str, query: dict[str, str] | None = None,
    **params: Any,
) -> Reply:
    body = {"lifecycleEvent": event, "triggerName": f"/_/{trigger}",
            "authKey": f"{api.uuid}:{api.key}", **params}
    return await api.call("POST", f"/api/v1/namespaces/whisk.system/actions/{action}",
                          params={"blocking": "true", **(query or {})}, json=body)


async def feed_trigger(api: Api, feed: str) -> str:
    name = new_name("trg")
    await make_trigger(api, name, annotations=[{"key": "feed", "value": f"/whisk.system/{feed}"}])
    return name


async def feed_changed(arrived: asyncio.Queue[AbstractIncomingMessage]) -> FeedChanged:
    return unpack((await next_message(arrived)).body, FeedChanged)


async def _queue_exists(broker: Broker, name: str) -> bool:
    channel = await broker.connection.channel()
    try:
        await channel.declare_queue(name, passive=True)
        return True
    except aiormq.exceptions.ChannelNotFoundEntity:
        return False
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def test_queue_feed_lifecycle(
    api: Api, store: Store, listen: Listen, broker: Broker
) -> None:
    ns = api.namespace
    source = f"orders-{uuid.uuid4().hex[:6]}"
    assert not await _queue_exists(broker, source)
    changes = await listen(FEEDS_EXCHANGE, "")
    trigger = await feed_trigger(api, "rabbitmq/queue")
    key = f"{ns}/{trigger}"

    created = await feed_call(api, "rabbitmq/queue", "CREATE", trigger,
                              queue=source, batchSize=10, maxBatchingWindowMs=500)
    assert created.status == 200, created.body
    # Declared before the answer: a message published right away is not unroutable.
    assert await _queue_exists(broker, source) and await _queue_exists(broker, f"{source}.dlq")
    record = created.body
    assert (record["namespace"], record["name"], record["subject"]) == (ns, "queue", ns)
    assert record["response"] == {"status": "success", "success": True,
                                  "result": {"status": "success"}, "size": 20}
    assert {"key": "path", "value": "whisk.system/rabbitmq/queue"} in record["annotations"]
    assert {"key": "kind", "value": "builtin"} in record["annotations"]
    assert created.headers["x-openwhisk-activation-id"] == record["activationId"]
    stored = await api.call("GET", f"/api/v1/namespaces/_/activations/{record['activationId']}")
    assert stored.body == record

    feed = await store.get_feed(key)
    assert feed is not None
    assert (feed.namespace, feed.trigger, feed.kind, feed.queue) == (ns, trigger, "queue", source)
    assert (feed.batch_size, feed.max_batching_window_ms, feed.max_concurrency) == (10, 500, 1)
    assert (feed.max_retries, feed.dead_letter_queue) == (3, None)
    # The feed's own parameters only: never the caller's key.
    assert feed.params == {"queue": source, "batchSize": 10, "maxBatchingWindowMs": 500}
    assert key in await store.feed_keys()
    assert await feed_changed(changes) == FeedChanged(key=key)

    read = await feed_call(api, "rabbitmq/queue", "READ", trigger, query={"result": "true"})
    assert read.status == 200
    assert read.body == {"config": feed.params,
                         "status": {"active": True, "dateChanged": feed.created}}

    updated = await feed_call(api, "rabbitmq/queue", "UPDATE", trigger,
                              maxRetries=5, deadLetterQueue=f"{source}.failed")
    assert updated.status == 200, updated.body
    feed = await store.get_feed(key)
    assert feed is not None and (feed.batch_size, feed.max_retries) == (10, 5)
    assert feed.dead_letter_queue == f"{source}.failed"
    assert await _queue_exists(broker, f"{source}.failed")
    assert await feed_changed(changes) == FeedChanged(key=key)

    deleted = await feed_call(api, "rabbitmq/queue", "DELETE", trigger)
    assert deleted.status == 200, deleted.body
    assert await store.get_feed(key) is None and key not in await store.feed_keys()
    assert await feed_changed(changes) == FeedChanged(key=key, deleted=True)

    gone = await feed_call(api, "rabbitmq/queue", "READ", trigger, query={"result": "true"})
    assert gone.status == 502
    assert gone.body == {"error": f"trigger /{key} has no queue feed"}


async def test_alarm_and_interval_feeds(api: Api, store: Store, listen: Listen) -> None:
    ns = api.namespace
    changes = await listen(FEEDS_EXCHANGE, "")
    alarm = await feed_trigger(api, "alarms/alarm")
    reply = await feed_call(
        api, "alarms/alarm", "CREATE", alarm, query={"result": "true"},
        cron="*/5 1-23/2 1,15 * 1-5", trigger_payload={"name": "Mork"},
        startDate="2030-01-02T03:04:05Z", stopDate=1_900_000_000_000,
    )
    assert (reply.status, reply.body) == (200, {"status": "success"})
    feed = await store.get_feed(f"{ns}/{alarm}")
    assert feed is not None and feed.kind == "alarm" and feed.cron == "*/5 1-23/2 1,15 * 1-5"
    assert feed.trigger_payload == {"name": "Mork"}
    assert feed.start_date == int(datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp() * 1000)
    assert feed.stop_date == 1_900_000_000_000
    assert await feed_changed(changes) == FeedChanged(key=f"{ns}/{alarm}")

    interval = await feed_trigger(api, "alarms/interval")
    reply = await feed_call(api, "alarms/interval", "CREATE", interval, minutes=2.5)
    assert reply.status == 200, reply.body
    feed = await store.get_feed(f"{ns}/{interval}")
    assert feed is not None and feed.kind == "interval" and feed.minutes == 2.5
    assert feed.trigger_payload == {} and feed.start_date is None
    assert await feed_changed(changes) == FeedChanged(key=f"{ns}/{interval}")

    # An UPDATE is checked like a CREATE, with the old parameters underneath.
    reply = await feed_call(api, "alarms/interval", "UPDATE", interval, minutes=0)
    assert reply.status == 502
    reply = await feed_call(api, "alarms/interval", "UPDATE", interval,
                            trigger_payload={"b": 2})
    assert reply.status == 200
    feed = await store.get_feed(f"{ns}/{interval}")
    assert feed is not None and feed.minutes == 2.5 and feed.trigger_payload == {"b": 2}

    # The other kind's action does not manage this feed.
    reply = await feed_call(api, "alarms/alarm", "DELETE", interval, query={"result": "true"})
    assert (reply.status, reply.body) == (
        502, {"error": f"trigger /{ns}/{interval} has no alarm feed"}
    )


@pytest.mark.parametrize(("action", "params", "message"), [
    ("rabbitmq/queue", {}, "'queue' is required: the name of the RabbitMQ queue to consume"),
    ("rabbitmq/queue", {"queue": ""}, "'queue' must be a queue name of 1 to 255 bytes"),
    ("rabbitmq/queue", {"queue": "q", "batchSize": 0},
     "'batchSize' must be a whole number from 1 to 1000, not 0"),
    ("rabbitmq/queue", {"queue": "q", "batchSize": 1001},
     "'batchSize' must be a whole number from 1 to 1000, not 1001"),
    ("rabbitmq/queue", {"queue": "q", "maxBatchingWindowMs": 300_001},
     "'maxBatchingWindowMs' must be a whole number from 0 to 300000, not 300001"),
    ("rabbitmq/queue", {"queue": "q", "maxConcurrency": 1.5},
     "'maxConcurrency' must be a whole number from 1 to 100"),
    ("rabbitmq/queue", {"queue": "q", "maxRetries": "3"},
     "'maxRetries' must be a whole number from 0 to 100"),
    ("rabbitmq/queue", {"queue": "q", "deadLetterQueue": "q"},
     "'deadLetterQueue' must not be the consumed 'queue'"),
    ("alarms/alarm", {}, "'cron' is required: a cron schedule such as '*/5 * * * *' "
                         "(5 fields, or 6 with the second first)"),
    ("alarms/alarm", {"cron": "* * * *"},
     "'cron' must have 5 fields (minute hour day-of-month month day-of-week), or 6 with the "
     "second first, not 4: '* * * *'"),
    ("alarms/alarm", {"cron": "60 * * * *"},
     "'cron' field minute '60' is not valid: use *, numbers 0-59, ranges a-b, steps */n or "
     "a-b/n, and lists with ','"),
    ("alarms/alarm", {"cron": "* * * * *", "trigger_payload": [1]},
     "'trigger_payload' must be a JSON object"),
    ("alarms/alarm", {"cron": "* * * * *", "startDate": "soon"},
     "'startDate' must be epoch milliseconds or an ISO 8601 date, not 'soon'"),
    ("alarms/alarm", {"cron": "* * * * *", "startDate": 2000, "stopDate": 1000},
     "'stopDate' must be after 'startDate'"),
    ("alarms/interval", {}, "'minutes' is required: a number of minutes greater than 0"),
    ("alarms/interval", {"minutes": -1},
     "'minutes' is required: a number of minutes greater than 0"),
])
async def test_feed_bad_params_are_application_errors(
    api: Api, store: Store, action: str, params: dict[str, Any], message: str
) -> None:
    trigger = await feed_trigger(api, action)
    reply = await feed_call(api, action, "CREATE", trigger, **params)
    assert reply.status == 502, reply.body
    assert reply.body["response"] == {"status": "application error", "success": False,
                                      "result": {"error": message},
                                      "size": len(message) + 12}
    assert reply.body["name"] == action.split("/")[1]
    assert await store.get_feed(f"{api.namespace}/{trigger}") is None
    result_only = await feed_call(api, action, "CREATE", trigger, query={"result": "true"},
                                  **params)
    assert (result_only.status, result_only.body) == (502, {"error": message})


async def test_feed_call_errors(api: Api, http: aiohttp.ClientSession) -> None:
    ns = api.namespace
    trigger = await feed_trigger(api, "alarms/interval")
    base = "/api/v1/namespaces/whisk.system/actions"

    async def error_of(body: dict[str, Any]) -> Any:
        reply = await api.call("POST", f"{base}/alarms/interval",
                               params={"blocking": "true", "result": "true"}, json=body)
        assert reply.status == 502, reply.body
        return reply.body["error"]

    assert await error_of({"lifecycleEvent": "CREATE", "triggerName": "/_/nope",
                           "minutes": 1}) == f"trigger /{ns}/nope does not exist"
    assert await error_of({"lifecycleEvent": "START", "triggerName": f"/_/{trigger}"}) == (
        "'lifecycleEvent' must be one of CREATE, READ, UPDATE, DELETE"
    )
    assert await error_of({"lifecycleEvent": "CREATE"}) == (
        "'triggerName' is required: the trigger as /namespace/name"
    )
    assert await error_of({"lifecycleEvent": "CREATE", "triggerName": "/guest/t"}) == (
        f"trigger /guest/t is not in your namespace '{ns}'"
    )

    # Not blocking: accepted with an id, the record is there all the same.
    reply = await api.call("POST", f"{base}/alarms/interval", json={
        "lifecycleEvent": "CREATE", "triggerName": trigger, "minutes": 3})
    assert reply.status == 202
    record = await api.call("GET", f"/api/v1/namespaces/_/activations/{reply.body['activationId']}")
    assert record.body["response"]["success"] is True

    # Other whisk.system packages are served as packages (the catalog has utils/echo).
    assert_error(await api.call("POST", f"{base}/utils/nope", json={}), 404,
                 "The requested resource does not exist.")
    reply = await api.call("POST", f"{base}/alarms/interval", auth=None, json={})
    assert reply.status == 401
    reply = await api.call("POST", f"{base}/alarms/interval", json=[1])
    assert reply.status == 400


async def test_trigger_delete_removes_its_feed(api: Api, store: Store, listen: Listen) -> None:
    changes = await listen(FEEDS_EXCHANGE, "")
    trigger = await feed_trigger(api, "alarms/alarm")
    await feed_call(api, "alarms/alarm", "CREATE", trigger, cron="0 * * * *")
    key = f"{api.namespace}/{trigger}"
    assert await feed_changed(changes) == FeedChanged(key=key)
    assert (await api.call("DELETE", f"/api/v1/namespaces/_/triggers/{trigger}")).status == 200
    assert await store.get_feed(key) is None
    assert await feed_changed(changes) == FeedChanged(key=key, deleted=True)


@pytest.mark.parametrize("cron", [
    "* * * * *", "0 0 1 1 0", "59 23 31 12 7", "*/15 * * * *", "0-30/10 8-17 * 1,6,12 1-5",
    "5,10,15 0 * * *", "*/10 * * * * *", "0,30 */5 * * * *", "59 59 23 31 12 7",
    "5/15 * * * *", "0 9 * JAN-MAR mon-fri",
])
def test_cron_accepts(cron: str) -> None:
    assert check_cron(cron) == cron


@pytest.mark.parametrize("cron", [
    "* * * *", "* * * * * * *", "60 * * * * *", "60 * * * *", "* 24 * * *", "* * 0 * *",
    "* * * 13 *", "* * * * 8", "*/0 * * * *", "5-1 * * * *", "a * * * *",
    "1,,2 * * * *", "-1 * * * *", "* * * JUNE *", "", "1-2-3 * * * *", "* * * * mon/x",
])
def test_cron_rejects(cron: str) -> None:
    with pytest.raises(FeedError):
        check_cron(cron)
