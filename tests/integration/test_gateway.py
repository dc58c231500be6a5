"""The gateway's REST API against the real Redis and RabbitMQ: the app runs in the test's loop
on a free loopback port; a test consumer on ``ft.activations`` plays the invoker."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web
from multidict import CIMultiDictProxy

from bus.broker import ACTIVATIONS, BATCH, Broker, activation_requests, settle
from bus.codec import CONTENT_TYPE, pack, unpack_obj
from bus.config import Settings
from bus.ids import new_activation_id, now_ms
from bus.models import (
    ActionDoc,
    ActivationDone,
    ActivationRecord,
    ActivationRequest,
    ActivationResponse,
    KeyValue,
    NamespaceAuth,
    StatusCode,
)
from bus.requests import build_request
from bus.store import ENTITY_CHANGED_CHANNEL, Store
from gateway.action_cache import ActionCache
from gateway.app import build_app
from gateway.state import INVALIDATIONS, PUBLISHER, WAITERS
from gateway.validation import GatewayLimits
from runtimes.kinds import supported_kinds
from tests.conftest import fresh_vhost

CODE = 'def main(args):\n    return {"greeting": "Hello " + args.get("name", "stranger")}\n'
CODE_LIMIT = 64 * 1024  # lowered so the 413 test needs no 48 MB body
UNSET: Any = object()


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Iterator[Settings]:
    """This module's own vhost (``store`` and ``broker`` follow it). The session's vhost may
    hold a running cluster whose initializer consumes ``ft.activations``; here the test's fake
    invoker must be the only consumer."""
    with fresh_vhost("ft-test-gw") as amqp_url:
        yield settings.model_copy(update={"amqp_url": amqp_url})


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any


class Api:
    """A thin client: JSON in, parsed JSON out, the caller's credentials by default."""

    def __init__(self, http: aiohttp.ClientSession, uuid: str, key: str, namespace: str) -> None:
        self.http = http
        self.uuid = uuid
        self.key = key
        self.namespace = namespace

    async def call(
        self, method: str, path: str, *, auth: tuple[str, str] | None = UNSET,
        headers: dict[str, str] | None = None, **kwargs: Any,
    ) -> Reply:
        """``auth``: unset for this client's key, None for none, or ``(uuid, key)``."""
        headers = dict(headers or {})
        credentials = (self.uuid, self.key) if auth is UNSET else auth
        if credentials is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(*credentials)
        async with self.http.request(method, path, headers=headers, **kwargs) as response:
            raw = await response.read()
            body = json.loads(raw) if raw else None
            return Reply(response.status, response.headers, body)


@dataclass
class Gateway:
    app: web.Application
    api: Api  # as guest
    runner: web.AppRunner


async def _start(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


@pytest.fixture
async def gateway(settings: Settings, store: Store, broker: Broker) -> AsyncIterator[Gateway]:
    app = build_app(settings, store, broker, limits=GatewayLimits(code_bytes=CODE_LIMIT))
    runner, port = await _start(app)
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
        yield Gateway(app, Api(http, settings.guest_uuid, settings.guest_key, "guest"), runner)
    await runner.cleanup()


@pytest.fixture
async def api(gateway: Gateway, store: Store) -> Api:
    """A client of a fresh namespace of its own, so lists and counts are exact."""
    ns = f"ns-{uuid.uuid4().hex[:10]}"
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32), namespace=ns)
    await store.put_auth(auth)
    return Api(gateway.api.http, auth.uuid, auth.key, ns)


Responder = Callable[[ActivationRequest], ActivationRecord | None]


class FakeInvoker:
    """Consumes ``ft.activations``; answers blocking requests with whatever ``respond``
    returns (None: stay silent)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.respond: Responder | None = None
        self.messages: dict[str, AbstractIncomingMessage] = {}
        self.arrived: asyncio.Queue[ActivationRequest] = asyncio.Queue()
        self._arrivals: dict[str, asyncio.Future[ActivationRequest]] = {}

    def _arrival(self, activation_id: str) -> asyncio.Future[ActivationRequest]:
        if activation_id not in self._arrivals:
            self._arrivals[activation_id] = asyncio.get_running_loop().create_future()
        return self._arrivals[activation_id]

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        for request in activation_requests(message):
            self.messages[request.activation_id] = message
            arrival = self._arrival(request.activation_id)
            if not arrival.done():
                arrival.set_result(request)
            self.arrived.put_nowait(request)
            record = self.respond(request) if self.respond and request.reply_to else None
            if record is not None and request.reply_to:
                done = ActivationDone(activation_id=request.activation_id, record=record)
                await self.broker.publish(
                    done, routing_key=request.reply_to, persistent=False, mandatory=False
                )
        await settle(message)

    async def received(self, activation_id: str, timeout: float = 5.0) -> ActivationRequest:
        return await asyncio.wait_for(asyncio.shield(self._arrival(activation_id)), timeout)


@pytest.fixture
async def invoker(broker: Broker) -> FakeInvoker:
    fake = FakeInvoker(broker)
    await broker.consume(ACTIVATIONS, fake.on_message, prefetch=50)
    return fake


def record_for(
    request: ActivationRequest, status: StatusCode, result: Any, logs: list[str] | None = None
) -> ActivationRecord:
    start = now_ms()
    return ActivationRecord(
        namespace=request.action.namespace, name=request.action.name,
        version=request.action.version, subject=request.subject,
        activationId=request.activation_id, start=start, end=start + 3,
        response=ActivationResponse(status_code=status, result=result), logs=logs or [],
        annotations=[KeyValue(key="path", value=request.action.path)],
    )


def new_name() -> str:
    return f"act-{uuid.uuid4().hex[:8]}"


async def create(api: Api, name: str, **body: Any) -> Reply:
    body.setdefault("exec", {"kind": "python:default", "code": CODE})
    reply = await api.call("PUT", f"/api/v1/namespaces/_/actions/{name}", json=body)
    assert reply.status == 200, reply.body
    return reply


def assert_error(reply: Reply, status: int, message: str) -> None:
    assert reply.status == status, reply.body
    assert reply.body == {"error": message, "code": reply.headers["X-Request-ID"]}


# -- basics ---------------------------------------------------------------------------------


async def test_module_has_its_own_vhost(settings: Settings, broker: Broker) -> None:
    vhost = settings.amqp_url.rsplit("/", 1)[1]
    assert vhost.startswith("ft-test-gw-")
    assert broker.connection.url.path == f"/{vhost}"


async def test_info_needs_no_auth(gateway: Gateway) -> None:
    reply = await gateway.api.call("GET", "/api/v1", auth=None)
    assert reply.status == 200
    assert reply.body["description"] == "OpenWhisk API"
    assert reply.body["api_version_path"] == "v1"
    assert reply.headers["Content-Type"].startswith("application/json")
    assert len(reply.headers["X-Request-ID"]) == 32
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert (await gateway.api.call("GET", "/api/v1/", auth=None)).body == reply.body


async def test_namespaces_lists_only_the_callers(gateway: Gateway, api: Api) -> None:
    assert (await gateway.api.call("GET", "/api/v1/namespaces")).body == ["guest"]
    assert (await api.call("GET", "/api/v1/namespaces")).body == [api.namespace]


async def test_auth_missing_and_invalid(gateway: Gateway, settings: Settings) -> None:
    path = "/api/v1/namespaces/_/actions"
    missing = await gateway.api.call("GET", path, auth=None)
    assert_error(missing, 401,
                 "The resource requires authentication, which was not supplied with the request")
    assert missing.headers["WWW-Authenticate"] == 'Basic realm="OpenWhisk secure realm"'
    for bad in ((settings.guest_uuid, "x" * 64), (str(uuid.uuid4()), settings.guest_key)):
        reply = await gateway.api.call("GET", path, auth=bad)
        assert_error(reply, 401, "The supplied authentication is invalid")
        assert reply.headers["WWW-Authenticate"] == 'Basic realm="OpenWhisk secure realm"'
    garbled = await gateway.api.call(
        "GET", path, auth=None, headers={"Authorization": "Basic !!!not-base64"}
    )
    assert_error(garbled, 401, "The supplied authentication is invalid")


async def test_other_namespace_is_forbidden(api: Api) -> None:
    reply = await api.call("GET", "/api/v1/namespaces/guest/actions")
    assert_error(reply, 403,
                 "The supplied authentication is not authorized to access this resource.")
    own = await api.call("GET", f"/api/v1/namespaces/{api.namespace}/actions")
    assert own.status == 200 and own.body == []


async def test_cors_preflight_and_headers(gateway: Gateway) -> None:
    reply = await gateway.api.call("OPTIONS", "/api/v1/namespaces/_/actions/x", auth=None)
    assert reply.status == 200
    assert reply.headers["Access-Control-Allow-Origin"] == "*"
    assert reply.headers["Access-Control-Allow-Methods"] == "GET, DELETE, POST, PUT, HEAD"
    assert "Authorization" in reply.headers["Access-Control-Allow-Headers"]


async def test_request_id_is_adopted(gateway: Gateway) -> None:
    reply = await gateway.api.call(
        "GET", "/api/v1/namespaces/_/actions/missing-one", headers={"X-Request-ID": "client-42"}
    )
    assert reply.headers["X-Request-ID"] == "client-42"
    assert_error(reply, 404, "The requested resource does not exist.")


async def test_unknown_route_and_wrong_method(gateway: Gateway) -> None:
    assert_error(await gateway.api.call("GET", "/api/v1/nothing/here"), 404,
                 "The requested resource does not exist.")
    reply = await gateway.api.call("PATCH", "/api/v1/namespaces/_/actions/x")
    assert reply.status == 405
    assert reply.body["error"].startswith("HTTP method not allowed, supported methods:")
    assert reply.body["code"] == reply.headers["X-Request-ID"]


async def test_unexpected_error_is_500_json(
    gateway: Gateway, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(store, "get_action", broken)
    reply = await gateway.api.call("GET", "/api/v1/namespaces/_/actions/any")
    assert_error(reply, 500, "There was an internal server error.")


async def test_guest_key_created_but_never_clobbered(
    settings: Settings, store: Store, broker: Broker
) -> None:
    fresh = settings.model_copy(update={"guest_uuid": str(uuid.uuid4())})
    app = build_app(fresh, store, broker)
    runner, _ = await _start(app)
    await runner.cleanup()
    assert await store.authenticate(fresh.guest_uuid, fresh.guest_key) == "guest"

    operator_key = secrets.token_hex(32)
    await store.put_auth(NamespaceAuth(uuid=fresh.guest_uuid, key=operator_key,
                                       namespace="guest"))
    runner, _ = await _start(build_app(fresh, store, broker))
    await runner.cleanup()
    assert await store.authenticate(fresh.guest_uuid, operator_key) == "guest"
    assert await store.authenticate(fresh.guest_uuid, fresh.guest_key) is None


# -- actions --------------------------------------------------------------------------------


async def test_action_create_get_list_delete(api: Api) -> None:
    ns = api.namespace
    name = new_name()
    created = (await create(api, name, parameters=[{"key": "name", "value": "World"}],
                            annotations=[{"key": "web-export", "value": True}])).body
    assert created["namespace"] == ns and created["name"] == name
    assert created["version"] == "0.0.1" and created["publish"] is False
    assert created["exec"] == {"kind": "python:3.11", "code": CODE, "binary": False}
    assert created["parameters"] == [{"key": "name", "value": "World"}]
    assert created["limits"] == {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
    assert created["annotations"] == [
        {"key": "web-export", "value": True},
        {"key": "provide-api-key", "value": False},
        {"key": "exec", "value": "python:3.11"},
    ]
    assert abs(created["updated"] - now_ms()) < 10_000

    path = f"/api/v1/namespaces/_/actions/{name}"
    assert (await api.call("GET", path)).body == created
    no_code = (await api.call("GET", path, params={"code": "false"})).body
    assert no_code["exec"] == {"kind": "python:3.11", "binary": False}

    listed = (await api.call("GET", "/api/v1/namespaces/_/actions")).body
    assert listed == [{
        "namespace": ns, "name": name, "version": "0.0.1", "publish": False,
        "annotations": created["annotations"], "limits": created["limits"],
        "exec": {"binary": False}, "updated": created["updated"],
    }]
    count = await api.call("GET", "/api/v1/namespaces/_/actions", params={"count": "true"})
    assert count.body == {"actions": 1}

    deleted = await api.call("DELETE", path)
    assert deleted.status == 200 and deleted.body == created
    assert_error(await api.call("GET", path), 404, "The requested resource does not exist.")
    assert_error(await api.call("DELETE", path), 404, "The requested resource does not exist.")
    assert (await api.call("GET", "/api/v1/namespaces/_/actions")).body == []


async def test_action_duplicate_and_update_merge(api: Api) -> None:
    name = new_name()
    path = f"/api/v1/namespaces/_/actions/{name}"
    await create(api, name, parameters=[{"key": "a", "value": 1}],
                 annotations=[{"key": "keep", "value": 1}, {"key": "change", "value": 1}],
                 limits={"timeout": 5000})
    dup = await api.call("PUT", path, json={"exec": {"kind": "python:3", "code": CODE}})
    assert_error(dup, 409, "resource already exists")

    update = {"parameters": [{"key": "b", "value": 2}],
              "annotations": [{"key": "change", "value": 2}, {"key": "new", "value": 3}],
              "limits": {"memory": 512}}
    updated = await api.call("PUT", path, params={"overwrite": "true"}, json=update)
    assert updated.status == 200, updated.body
    doc = updated.body
    assert doc["version"] == "0.0.2"
    assert doc["exec"]["code"] == CODE  # no exec given: the old one stays
    assert doc["parameters"] == [{"key": "b", "value": 2}]
    assert doc["limits"] == {"timeout": 5000, "memory": 512, "logs": 10, "concurrency": 1}
    assert doc["annotations"] == [
        {"key": "keep", "value": 1}, {"key": "change", "value": 2},
        {"key": "provide-api-key", "value": False}, {"key": "new", "value": 3},
        {"key": "exec", "value": "python:3.11"},
    ]
    again = await api.call("PUT", path, params={"overwrite": "true"},
                           json={"exec": {"kind": "python:3.11", "code": "UEsDBA==",
                                          "main": "run"}, "version": "1.2.3"})
    assert again.body["version"] == "1.2.3"
    assert again.body["exec"] == {"kind": "python:3.11", "code": "UEsDBA==", "binary": True,
                                  "main": "run"}
    # overwrite=true on a name that does not exist creates it
    fresh = await api.call("PUT", f"/api/v1/namespaces/_/actions/{new_name()}",
                           params={"overwrite": "true"},
                           json={"exec": {"kind": "python:3.11", "code": CODE}})
    assert fresh.status == 200 and fresh.body["version"] == "0.0.1"


async def test_concurrent_update_is_409(api: Api, store: Store,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    name = new_name()
    await create(api, name)
    read_action = store.get_action

    async def read_then_lose_race(ns: str, action: str) -> ActionDoc | None:
        seen = await read_action(ns, action)
        assert seen is not None
        # Another writer replaces the document between our read and our write.
        rival = seen.model_copy(update={"version": "9.9.9", "updated": now_ms()})
        assert await store.put_entity("actions", ns, action, rival, rival.updated, replaces=seen)
        return seen

    monkeypatch.setattr(store, "get_action", read_then_lose_race)
    reply = await api.call("PUT", f"/api/v1/namespaces/_/actions/{name}",
                           params={"overwrite": "true"}, json={"publish": True})
    assert_error(reply, 409, "Concurrent modification to resource detected.")
    monkeypatch.undo()
    stored = await store.get_action(api.namespace, name)
    assert stored is not None and stored.version == "9.9.9" and stored.publish is False


async def test_large_binary_code_round_trip(
    settings: Settings, store: Store, broker: Broker
) -> None:
    app = build_app(settings, store, broker)  # default limits: 48 MB of code
    runner, port = await _start(app)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            api = Api(http, settings.guest_uuid, settings.guest_key, "guest")
            code = base64.b64encode(secrets.token_bytes(3 * 1024 * 1024)).decode()
            name = new_name()
            created = await create(api, name, exec={"kind": "python:3.11", "code": code})
            assert created.body["exec"]["binary"] is True
            got = await api.call("GET", f"/api/v1/namespaces/_/actions/{name}")
            assert got.body["exec"]["code"] == code
            doc = await store.get_action("guest", name)
            assert doc is not None and doc.exec.code_size == len(code)
            await api.call("DELETE", f"/api/v1/namespaces/_/actions/{name}")
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("body", "message"), [
    ({}, "exec undefined"),
    ({"exec": {"kind": "cobol:1", "code": CODE}},
     "The specified runtime 'cobol:1' is not supported by this platform. Valid values are: '"
     + "', '".join(supported_kinds()) + "'."),
    ({"limits": {"timeout": 50}},
     "Timeout 50 milliseconds below allowed threshold of 100 milliseconds"),
    ({"limits": {"timeout": 300001}},
     "Timeout 300001 milliseconds exceeds allowed threshold of 300000 milliseconds"),
    ({"limits": {"memory": 1024}}, "Memory 1024 MB exceeds allowed threshold of 512 MB"),
    ({"limits": {"memory": 64}}, "Memory 64 MB below allowed threshold of 128 MB"),
    ({"limits": {"logs": 11}}, "Log size 11 MB exceeds allowed threshold of 10 MB"),
    ({"limits": {"concurrency": 5}}, "concurrency 5 exceeds allowed threshold of 1"),
])
async def test_action_create_validation(api: Api, body: dict[str, Any], message: str) -> None:
    if "limits" in body:
        body = {"exec": {"kind": "python:3.11", "code": CODE}, **body}
    reply = await api.call("PUT", f"/api/v1/namespaces/_/actions/{new_name()}", json=body)
    assert_error(reply, 400, message)


async def test_action_bad_bodies_and_names(api: Api) -> None:
    path = f"/api/v1/namespaces/_/actions/{new_name()}"
    for raw in (b"{not json", b"[1, 2]", b'"text"'):
        reply = await api.call("PUT", path, data=raw,
                               headers={"Content-Type": "application/json"})
        assert reply.status == 400, raw
        assert reply.body["error"].startswith("The request content was malformed:")
    no_code = await api.call("PUT", path, json={"exec": {"kind": "python:3.11"}})
    assert_error(no_code, 400, "The request content was malformed:\n"
                 "'code' must be a string defined in 'exec' for 'python:3.11' actions")
    illegal = await api.call("PUT", "/api/v1/namespaces/_/actions/bad$name",
                             json={"exec": {"kind": "python:3.11", "code": CODE}})
    assert_error(illegal, 400, "The name of the entity contains illegal characters.")
    long_name = "a" * 257
    too_long = await api.call("GET", f"/api/v1/namespaces/_/actions/{long_name}")
    assert_error(too_long, 400, "Name segement longer than allowed: 257 > 256.")
    assert (await api.call("GET", "/api/v1/namespaces/_/actions/ok name.v1@x&y-z")).status == 404


async def test_action_sizes_are_limited(api: Api) -> None:
    path = f"/api/v1/namespaces/_/actions/{new_name()}"
    code = "#" * (CODE_LIMIT + 1)
    reply = await api.call("PUT", path, json={"exec": {"kind": "python:3.11", "code": code}})
    assert_error(reply, 413, f"Request larger than allowed: {CODE_LIMIT + 1} > {CODE_LIMIT} bytes.")
    big = "x" * (1024 * 1024)
    params = await api.call("PUT", path, json={
        "exec": {"kind": "python:3.11", "code": CODE}, "parameters": [{"key": "k", "value": big}]
    })
    size = 1 + len(big) + 2  # key + quoted value
    assert_error(params, 413, f"Request larger than allowed: {size} > 1048576 bytes.")


async def test_list_window(api: Api) -> None:
    names = [new_name() for _ in range(3)]
    for name in names:
        await create(api, name)
    path = "/api/v1/namespaces/_/actions"
    newest_first = list(reversed(names))
    assert [a["name"] for a in (await api.call("GET", path)).body] == newest_first
    page = await api.call("GET", path, params={"limit": "1", "skip": "1"})
    assert [a["name"] for a in page.body] == newest_first[1:2]
    assert len((await api.call("GET", path, params={"limit": "0"})).body) == 3
    assert_error(await api.call("GET", path, params={"limit": "201"}), 400,
                 "The value '201' is not in the range of 0 to 200 for actions.")
    assert_error(await api.call("GET", path, params={"skip": "-1"}), 400,
                 "The value '-1' is not greater than or equal to 0 for actions.")
    assert_error(await api.call("GET", path, params={"limit": "x"}), 400,
                 "The value 'x' is not an integer for actions.")


# -- invoke ---------------------------------------------------------------------------------


async def test_invoke_non_blocking_publishes_request(
    api: Api, invoker: FakeInvoker, settings: Settings
) -> None:
    name = new_name()
    await create(api, name, parameters=[
        {"key": "name", "value": "World"}, {"key": "keep", "value": [1]},
        {"key": "SECRET", "value": "s3", "init": True}, {"key": "CFG", "value": {"a": 1},
                                                         "init": True},
    ])
    before = now_ms()
    reply = await api.call("POST", f"/api/v1/namespaces/_/actions/{name}",
                           json={"name": "Jane", "extra": True})
    assert reply.status == 202, reply.body
    activation_id = reply.body["activationId"]
    assert reply.body == {"activationId": activation_id}
    assert reply.headers["x-openwhisk-activation-id"] == activation_id

    request = await invoker.received(activation_id)
    message = invoker.messages[activation_id]
    assert message.message_id == activation_id and message.content_type == CONTENT_TYPE
    assert message.delivery_mode == 2  # persistent
    ns = api.namespace
    assert request.transaction_id == reply.headers["X-Request-ID"]
    assert request.invoking_namespace == ns and request.subject == ns
    assert request.payload == {"name": "Jane", "keep": [1], "extra": True}
    assert request.blocking is False and request.reply_to is None
    assert before <= request.accepted_at <= now_ms()
    snapshot = request.action
    assert (snapshot.namespace, snapshot.name, snapshot.version) == (ns, name, "0.0.1")
    assert snapshot.kind == "python:3.11" and snapshot.main == "main"
    assert snapshot.code_digest == hashlib.sha256(CODE.encode()).hexdigest()
    assert snapshot.init_env == {"SECRET": "s3", "CFG": '{"a":1}'}
    assert snapshot.provide_api_key is False


async def test_invoke_array_and_empty_payloads(api: Api, invoker: FakeInvoker) -> None:
    name = new_name()
    await create(api, name, parameters=[{"key": "p", "value": 1}])
    path = f"/api/v1/namespaces/_/actions/{name}"
    array = await api.call("POST", path, json=[1, "two"])
    assert (await invoker.received(array.body["activationId"])).payload == [1, "two"]
    empty = await api.call("POST", path)
    assert (await invoker.received(empty.body["activationId"])).payload == {"p": 1}


async def test_invoke_asks_for_a_key_but_never_carries_one(
    api: Api, invoker: FakeInvoker
) -> None:
    """The invoker mints a key for the run; the caller's own key never goes on the bus."""
    name = new_name()
    await create(api, name, annotations=[{"key": "provide-api-key", "value": True}])
    reply = await api.call("POST", f"/api/v1/namespaces/_/actions/{name}")
    request = await invoker.received(reply.body["activationId"])
    assert request.action.provide_api_key is True
    message = invoker.messages[reply.body["activationId"]]
    assert api.key.encode() not in message.body and "api_key" not in unpack_obj(message.body)


@pytest.mark.parametrize(("status_code", "result", "http_status"), [
    (StatusCode.SUCCESS, {"greeting": "Hello Jane"}, 200),
    (StatusCode.APPLICATION_ERROR, {"error": "bad input"}, 502),
    (StatusCode.DEVELOPER_ERROR, {"error": "The action did not initialize"}, 502),
    (StatusCode.WHISK_ERROR, {"error": "Failed to provision resources to run the action."}, 500),
])
async def test_invoke_blocking_status_mapping(
    api: Api, invoker: FakeInvoker, status_code: StatusCode, result: Any, http_status: int
) -> None:
    records: dict[str, ActivationRecord] = {}

    def respond(request: ActivationRequest) -> ActivationRecord:
        records[request.activation_id] = record_for(request, status_code, result)
        return records[request.activation_id]

    invoker.respond = respond
    name = new_name()
    await create(api, name)
    path = f"/api/v1/namespaces/_/actions/{name}"
    reply = await api.call("POST", path, params={"blocking": "true"}, json={"name": "Jane"})
    assert reply.status == http_status, reply.body
    activation_id = reply.headers["x-openwhisk-activation-id"]
    assert reply.body == records[activation_id].to_api()
    assert reply.body["response"]["result"] == result
    request = await invoker.received(activation_id)
    assert request.blocking is True and request.reply_to is not None

    only = await api.call("POST", path, params={"blocking": "true", "result": "true"})
    assert only.status == http_status and only.body == result


async def test_invoke_blocking_array_result_is_returned_as_is(
    api: Api, invoker: FakeInvoker
) -> None:
    invoker.respond = lambda request: record_for(request, StatusCode.SUCCESS, [1, {"b": 2}])
    name = new_name()
    await create(api, name)
    reply = await api.call("POST", f"/api/v1/namespaces/_/actions/{name}",
                           params={"blocking": "true"})
    assert reply.status == 200 and reply.body == [1, {"b": 2}]


async def test_invoke_blocking_expires_into_202(
    gateway: Gateway, api: Api, invoker: FakeInvoker
) -> None:
    name = new_name()
    await create(api, name)
    started = time.monotonic()
    reply = await api.call("POST", f"/api/v1/namespaces/_/actions/{name}",
                           params={"blocking": "true", "timeout": "300"})
    elapsed = time.monotonic() - started
    assert reply.status == 202
    assert reply.body == {"activationId": reply.headers["x-openwhisk-activation-id"]}
    assert 0.3 <= elapsed < 3
    await invoker.received(reply.body["activationId"])
    assert len(gateway.app[WAITERS]) == 0


async def test_invoke_blocking_finds_record_when_reply_is_lost(
    api: Api, invoker: FakeInvoker, store: Store
) -> None:
    written: list[asyncio.Task[bool]] = []

    def write_only(request: ActivationRequest) -> None:
        record = record_for(request, StatusCode.SUCCESS, {"ok": True})
        written.append(asyncio.ensure_future(store.write_record(record)))

    invoker.respond = write_only
    name = new_name()
    await create(api, name)
    reply = await api.call("POST", f"/api/v1/namespaces/_/actions/{name}",
                           params={"blocking": "true", "timeout": "500", "result": "true"})
    assert reply.status == 200 and reply.body == {"ok": True}


async def test_invoke_validation(api: Api, invoker: FakeInvoker) -> None:
    name = new_name()
    await create(api, name, parameters=[{"key": "fixed", "value": 1}],
                 annotations=[{"key": "final", "value": True}])
    path = f"/api/v1/namespaces/_/actions/{name}"
    for bad in ("0", "60001", "soon"):
        reply = await api.call("POST", path, params={"blocking": "true", "timeout": bad})
        assert_error(reply, 400, "Timeout must be number of milliseconds up to 60000.")
    big = {"data": "x" * (1024 * 1024)}
    size = len(json.dumps(big).encode())
    assert_error(await api.call("POST", path, data=json.dumps(big)), 413,
                 f"Request larger than allowed: {size} > 1048576 bytes.")
    assert_error(await api.call("POST", path, json={"fixed": 2}), 400,
                 "Request defines parameters that are not allowed (e.g., reserved properties).")
    assert (await api.call("POST", path, json={"other": 2})).status == 202
    assert_error(await api.call("POST", f"/api/v1/namespaces/_/actions/{new_name()}"), 404,
                 "The requested resource does not exist.")


async def test_invoke_publish_failure_is_503(
    gateway: Gateway, api: Api, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = new_name()
    await create(api, name)

    async def refused(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("broker gone")

    monkeypatch.setattr(broker, "publish", refused)
    # The gateway tries a refused publish again for a while (a broker failover), then answers.
    monkeypatch.setattr("gateway.publisher.PUBLISH_PATIENCE_S", 0.3)
    for blocking in ("false", "true"):
        reply = await api.call("POST", f"/api/v1/namespaces/_/actions/{name}",
                               params={"blocking": blocking})
        assert_error(reply, 503, "The server is currently unavailable (because it is "
                                 "overloaded or down for maintenance).")
    assert len(gateway.app[WAITERS]) == 0


async def test_shutdown_answers_waiting_requests(
    settings: Settings, store: Store, broker: Broker, invoker: FakeInvoker
) -> None:
    app = build_app(settings, store, broker)
    runner, port = await _start(app)
    # A namespace of its own: the session's guest may be at its concurrency throttle, held by
    # activations other tests left unanswered.
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32),
                         namespace=f"ns-{uuid.uuid4().hex[:10]}")
    await store.put_auth(auth)
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
        api = Api(http, auth.uuid, auth.key, auth.namespace)
        name = new_name()
        await create(api, name)
        pending = asyncio.ensure_future(
            api.call("POST", f"/api/v1/namespaces/_/actions/{name}", params={"blocking": "true"})
        )
        # Once the invoker holds the request, its waiter is registered (before publishing).
        while True:
            arrival = asyncio.ensure_future(invoker.arrived.get())
            await asyncio.wait({arrival, pending}, timeout=5, return_when=asyncio.FIRST_COMPLETED)
            if not arrival.done():
                arrival.cancel()
            assert not pending.done(), f"answered before the invoker got it: {pending.result()}"
            assert arrival.done(), "the invoker never got the request"
            if arrival.result().action.name == name:
                break
        assert len(app[WAITERS]) == 1
        started = time.monotonic()
        await runner.cleanup()
        reply = await asyncio.wait_for(pending, 5)
    assert reply.status == 202 and "activationId" in reply.body
    assert time.monotonic() - started < 5


# -- the action cache -----------------------------------------------------------------------


@dataclass
class CachedPair:
    own: Api  # the gateway the test writes through
    other: Api  # another gateway process: its own Store, so it hears of writes only by pub/sub
    own_app: web.Application


@pytest.fixture
async def cached_pair(
    settings: Settings, store: Store, broker: Broker
) -> AsyncIterator[CachedPair]:
    """Two gateways whose action caches never expire: whatever they see of a change reached
    them by invalidation."""
    forever = settings.model_copy(update={"action_cache_ttl_s": 3600.0})
    other_store = Store.from_url(settings.redis_url)
    own_app, other_app = build_app(forever, store, broker), build_app(forever, other_store, broker)
    (own_runner, own_port), (other_runner, other_port) = await _start(own_app), await _start(
        other_app)
    ns = f"ns-{uuid.uuid4().hex[:10]}"
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32), namespace=ns)
    await store.put_auth(auth)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{own_port}") as own, \
                aiohttp.ClientSession(base_url=f"http://127.0.0.1:{other_port}") as other:
            yield CachedPair(Api(own, auth.uuid, auth.key, ns), Api(other, auth.uuid, auth.key, ns),
                             own_app)
    finally:
        await own_runner.cleanup()
        await other_runner.cleanup()
        await other_store.close()


async def _invoked_with(api: Api, invoker: FakeInvoker, name: str) -> Any:
    """The parameter ``v`` the published request carries (None when the invoke is refused)."""
    reply = await api.call("POST", f"/api/v1/namespaces/_/actions/{name}")
    if reply.status == 404:
        return None
    assert reply.status == 202, reply.body
    return (await invoker.received(reply.body["activationId"])).payload["v"]


async def _until_invoked_with(
    api: Api, invoker: FakeInvoker, name: str, wanted: Any, within_s: float = 2.0
) -> None:
    deadline = time.monotonic() + within_s
    while (seen := await _invoked_with(api, invoker, name)) != wanted:
        if time.monotonic() > deadline:
            raise AssertionError(f"still invoked with {seen!r}, not {wanted!r}")
        await asyncio.sleep(0.05)


async def test_action_changes_reach_every_gateways_cache(
    cached_pair: CachedPair, invoker: FakeInvoker
) -> None:
    own, other = cached_pair.own, cached_pair.other
    name = new_name()
    await create(own, name, parameters=[{"key": "v", "value": 1}])
    assert await _invoked_with(own, invoker, name) == 1
    assert await _invoked_with(other, invoker, name) == 1  # both caches hold version 1 now

    # The writing gateway needs no announcement to see its own write: it hears none here.
    await cached_pair.own_app[INVALIDATIONS].close()
    reply = await own.call("PUT", f"/api/v1/namespaces/_/actions/{name}?overwrite=true",
                           json={"parameters": [{"key": "v", "value": 2}]})
    assert reply.status == 200, reply.body
    # The writing gateway knew before its client did; the other hears of it over pub/sub.
    assert await _invoked_with(own, invoker, name) == 2
    await _until_invoked_with(other, invoker, name, 2)

    assert (await own.call("DELETE", f"/api/v1/namespaces/_/actions/{name}")).status == 200
    assert await _invoked_with(own, invoker, name) is None
    await _until_invoked_with(other, invoker, name, None)


async def _cached_then_changed_unannounced(api: Api, invoker: FakeInvoker, store: Store) -> str:
    """An action invoked with ``v`` 1 (so cached), then set to ``v`` 2 behind the store's
    back: nobody announces that change."""
    name = new_name()
    await create(api, name, parameters=[{"key": "v", "value": 1}])
    assert await _invoked_with(api, invoker, name) == 1
    doc = await store.get_action(api.namespace, name)
    assert doc is not None
    changed = doc.model_copy(update={"parameters": [KeyValue(key="v", value=2)]})
    await store.redis.set(f"ft:ent:actions:{api.namespace}:{name}", pack(changed))
    return name


async def test_cached_action_is_not_read_again_until_announced(
    cached_pair: CachedPair, invoker: FakeInvoker, store: Store
) -> None:
    api = cached_pair.own
    name = await _cached_then_changed_unannounced(api, invoker, store)
    assert await _invoked_with(api, invoker, name) == 1
    await store.redis.publish(ENTITY_CHANGED_CHANNEL, f"actions:{api.namespace}:{name}")
    await _until_invoked_with(api, invoker, name, 2)


async def test_action_read_that_raced_with_a_change_is_not_kept(store: Store) -> None:
    ns, name = f"ns-{uuid.uuid4().hex[:10]}", new_name()
    entity = f"actions:{ns}:{name}"
    doc = ActionDoc.model_validate({"namespace": ns, "name": name, "version": "0.0.1",
                                    "exec": {"kind": "python:3.11", "code_digest": "0" * 64},
                                    "updated": now_ms()})
    assert await store.put_entity("actions", ns, name, doc, doc.updated, None)
    cache = ActionCache(store, ttl_s=3600.0)
    reading = asyncio.ensure_future(cache.get(ns, name))
    await asyncio.sleep(0)  # the read is under way
    cache.forget(entity)
    assert (await reading) == doc  # answered...
    newer = doc.model_copy(update={"version": "0.0.2"})
    await store.redis.set(f"ft:ent:{entity}", pack(newer))
    assert await cache.get(ns, name) == newer  # ...but not kept
    await store.redis.set(f"ft:ent:{entity}", pack(doc))
    assert await cache.get(ns, name) == newer  # this read was kept


async def test_lost_invalidation_feed_clears_the_cache(
    cached_pair: CachedPair, invoker: FakeInvoker, store: Store
) -> None:
    api = cached_pair.own
    name = await _cached_then_changed_unannounced(api, invoker, store)
    # Announcements sent while a gateway is not subscribed are lost to it: when it subscribes
    # again (a second later) it starts from an empty cache.
    await store.redis.client_kill_filter(_type="pubsub")
    await _until_invoked_with(api, invoker, name, 2, within_s=10.0)


# -- activations ----------------------------------------------------------------------------


def _stored_record(ns: str, name: str, start: int, status: StatusCode = StatusCode.SUCCESS,
                   ) -> ActivationRecord:
    return ActivationRecord(
        namespace=ns, name=name, version="0.0.1", subject=ns,
        activationId=new_activation_id(), start=start, end=start + 7,
        response=ActivationResponse(status_code=status, result={"n": start}),
        logs=[f"2024-06-10T12:00:00.000000000Z stdout: run {start}"],
        annotations=[KeyValue(key="kind", value="python:3.11")],
    )


async def test_activations_list_get_result_logs(api: Api, store: Store) -> None:
    ns = api.namespace
    base = now_ms()
    records = [
        _stored_record(ns, "one", base),
        _stored_record(ns, "two", base + 1, StatusCode.APPLICATION_ERROR),
        _stored_record(ns, "one", base + 2),
    ]
    for record in records:
        assert await store.write_record(record)
    path = "/api/v1/namespaces/_/activations"

    listed = (await api.call("GET", path)).body
    assert listed == [r.summary() for r in reversed(records)]
    assert listed[1]["statusCode"] == 1
    full = (await api.call("GET", path, params={"docs": "true"})).body
    assert full == [r.to_api() for r in reversed(records)]
    by_name = (await api.call("GET", path, params={"name": "one"})).body
    assert [a["activationId"] for a in by_name] == [records[2].activationId,
                                                    records[0].activationId]
    window = (await api.call("GET", path, params={"since": base + 1, "upto": base + 1})).body
    assert [a["activationId"] for a in window] == [records[1].activationId]
    paged = (await api.call("GET", path, params={"limit": 1, "skip": 1})).body
    assert [a["activationId"] for a in paged] == [records[1].activationId]
    assert (await api.call("GET", path, params={"count": "true"})).body == {"activations": 3}
    assert (await api.call("GET", path, params={"count": "true", "name": "one"})).body == {
        "activations": 2}

    target = records[1]
    one = await api.call("GET", f"{path}/{target.activationId}")
    assert one.status == 200 and one.body == target.to_api()
    assert one.body["response"]["status"] == "application error"
    result = await api.call("GET", f"{path}/{target.activationId}/result")
    assert result.body == {"result": {"n": base + 1}, "success": False,
                           "status": "application error", "size": len(f'{{"n":{base + 1}}}')}
    logs = await api.call("GET", f"{path}/{target.activationId}/logs")
    assert logs.body == {"logs": target.logs}


async def test_activations_validation_and_isolation(
    gateway: Gateway, api: Api, store: Store
) -> None:
    path = "/api/v1/namespaces/_/activations"
    assert_error(await api.call("GET", f"{path}/abc"), 400,
                 "Activation id length is 3 but must be 32.")
    assert_error(await api.call("GET", f"{path}/{'Z' * 32}"), 400,
                 "The activation id is not valid.")
    assert_error(await api.call("GET", f"{path}/{new_activation_id()}"), 404,
                 "The requested resource does not exist.")
    theirs = _stored_record("guest", "private", now_ms())
    await store.write_record(theirs)
    assert (await gateway.api.call("GET", f"{path}/{theirs.activationId}")).status == 200
    assert_error(await api.call("GET", f"{path}/{theirs.activationId}/result"), 404,
                 "The requested resource does not exist.")
    assert_error(await api.call("GET", path, params={"docs": "true", "count": "true"}), 400,
                 "The parameter 'docs' is not permitted with 'count'.")
    assert_error(await api.call("GET", path, params={"since": "yesterday"}), 400,
                 "Parameter is not a valid value for epoch seconds: yesterday")
    assert_error(await api.call("GET", path, params={"name": "a/b/c"}), 400,
                 "Parameter may be a 'simple' name or 'package-name/simple' name: a/b/c")
    assert_error(await api.call("GET", path, params={"limit": "500"}), 400,
                 "The value '500' is not in the range of 0 to 200 for activations.")


async def test_activations_of_one_turn_share_one_confirmed_message(
    gateway: Gateway, api: Api, store: Store, invoker: FakeInvoker
) -> None:
    name = new_name()
    await create(api, name)
    doc = await store.get_action(api.namespace, name)
    assert doc is not None
    requests = [build_request(doc, {"n": n}, namespace=api.namespace,
                              activation_id=new_activation_id(), transaction_id="t")
                for n in range(5)]
    await asyncio.gather(*(gateway.app[PUBLISHER].publish(r) for r in requests))
    arrived = [await invoker.received(r.activation_id) for r in requests]
    assert [r.payload for r in arrived] == [{"n": n} for n in range(5)]
    [message] = {id(invoker.messages[r.activation_id]): invoker.messages[r.activation_id]
                 for r in requests}.values()
    assert message.type == BATCH and message.delivery_mode == 2  # persistent
    # A lone one goes as itself, named by its id.
    alone = build_request(doc, {}, namespace=api.namespace, activation_id=new_activation_id(),
                          transaction_id="t")
    await gateway.app[PUBLISHER].publish(alone)
    await invoker.received(alone.activation_id)
    assert invoker.messages[alone.activation_id].message_id == alone.activation_id


async def test_a_name_belongs_to_one_collection_of_a_namespace(api: Api) -> None:
    """As OpenWhisk's document ids: an action's name is no trigger's, rule's or package's."""
    name = new_name()
    await create(api, name)
    taken = "Resource by this name exists but is not in this collection."
    assert_error(await api.call("PUT", f"/api/v1/namespaces/_/triggers/{name}", json={}),
                 409, taken)
    assert_error(await api.call("PUT", f"/api/v1/namespaces/_/packages/{name}", json={}),
                 409, taken)
    for collection in ("triggers", "rules"):
        assert_error(await api.call("GET", f"/api/v1/namespaces/_/{collection}/{name}"),
                     409, taken)
    assert_error(await api.call("DELETE", f"/api/v1/namespaces/_/packages/{name}"), 409, taken)
    assert (await api.call("GET", f"/api/v1/namespaces/_/actions/{name}")).status == 200
    # A name nobody holds is still simply missing.
    assert_error(await api.call("GET", f"/api/v1/namespaces/_/triggers/{new_name()}"),
                 404, "The requested resource does not exist.")
    # Once the action is gone, the name is free for a trigger.
    assert (await api.call("DELETE", f"/api/v1/namespaces/_/actions/{name}")).status == 200
    assert (await api.call("PUT", f"/api/v1/namespaces/_/triggers/{name}", json={})).status == 200
    assert_error(await api.call("GET", f"/api/v1/namespaces/_/actions/{name}"), 409, taken)
