"""Every 4xx of OpenWhisk's catalogue that Funtainer produces, with its exact text, plus the
per-namespace throttles (429), the limits endpoint, ``ft admin`` and the CLI's ``namespace``
and ``activation poll``. The gateway runs in the test's loop on this module's own vhost; a fake
invoker consumes ``ft.activations`` (records are written by the test, as an invoker would)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from bus.broker import ACTIVATIONS, Broker
from bus.config import Settings
from bus.ids import now_ms
from bus.models import NamespaceAuth, NamespaceLimits, StatusCode
from bus.store import Store
from cli.main import main as ft_main
from gateway.app import build_app
from gateway.validation import GatewayLimits
from tests.conftest import fresh_vhost
from tests.integration.test_gateway import (
    CODE,
    Api,
    FakeInvoker,
    _start,
    assert_error,
    create,
    new_name,
    record_for,
)

ACTIONS = "/api/v1/namespaces/_/actions"
DEFAULT_LIMITS = {
    "invocationsPerMinute": 60, "concurrentInvocations": 30, "firesPerMinute": 60,
    "minActionMemory": 128, "maxActionMemory": 512, "minActionLogs": 0, "maxActionLogs": 10,
    "minActionTimeout": 100, "maxActionTimeout": 300000, "minActionConcurrency": 1,
    "maxActionConcurrency": 1, "maxParameterSize": "1 MB", "maxActionInstances": 30,
}


@pytest.fixture(scope="module")
def settings(settings: Settings) -> Iterator[Settings]:
    """This module's own vhost: the fake invoker must be the only consumer of activations."""
    with fresh_vhost("ft-test-cat") as amqp_url:
        yield settings.model_copy(update={"amqp_url": amqp_url})


@pytest.fixture
async def base_url(settings: Settings, store: Store, broker: Broker) -> AsyncIterator[str]:
    app = build_app(settings, store, broker, limits=GatewayLimits(code_bytes=64 * 1024))
    runner, port = await _start(app)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
async def api(base_url: str, store: Store) -> AsyncIterator[Api]:
    """A fresh namespace of its own, so counts and throttles are exact."""
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32),
                         namespace=f"ns-{uuid.uuid4().hex[:10]}")
    await store.put_auth(auth)
    async with aiohttp.ClientSession(base_url=base_url) as http:
        yield Api(http, auth.uuid, auth.key, auth.namespace)


@pytest.fixture
async def invoker(broker: Broker) -> FakeInvoker:
    fake = FakeInvoker(broker)
    await broker.consume(ACTIVATIONS, fake.on_message, prefetch=50)
    return fake


async def _same_minute(seconds_needed: float = 5.0) -> None:
    """Rate windows are calendar minutes: start a rate test where it cannot straddle two."""
    into_minute = time.time() % 60
    if into_minute > 60 - seconds_needed:
        await asyncio.sleep(60.5 - into_minute)


# -- 404, 409, 403 --------------------------------------------------------------------------


async def test_not_found(api: Api) -> None:
    missing = "The requested resource does not exist."
    for method, path in (
        ("GET", f"{ACTIONS}/nope"), ("DELETE", f"{ACTIONS}/nope"), ("POST", f"{ACTIONS}/nope"),
        ("GET", "/api/v1/namespaces/_/triggers/nope"),
        ("POST", "/api/v1/namespaces/_/triggers/nope"),
        ("GET", "/api/v1/namespaces/_/rules/nope"), ("GET", "/api/v1/namespaces/_/packages/nope"),
        ("GET", f"/api/v1/namespaces/_/activations/{uuid.uuid4().hex}"),
    ):
        assert_error(await api.call(method, path), 404, missing)


async def test_conflicts(api: Api, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    name = new_name()
    await create(api, name)
    again = await api.call("PUT", f"{ACTIONS}/{name}",
                           json={"exec": {"kind": "python:default", "code": CODE}})
    assert_error(again, 409, "resource already exists")

    # A writer that lost the race to replace the version it read.
    async def lost_race(*args: Any, **kwargs: Any) -> bool:
        return False

    monkeypatch.setattr(store, "put_entity", lost_race)
    update = await api.call("PUT", f"{ACTIONS}/{name}?overwrite=true", json={"parameters": []})
    assert_error(update, 409, "Concurrent modification to resource detected.")
    monkeypatch.undo()

    pkg = f"pkg-{uuid.uuid4().hex[:6]}"
    assert (await api.call("PUT", f"/api/v1/namespaces/_/packages/{pkg}", json={})).status == 200
    await create(api, f"{pkg}/inner")
    not_empty = await api.call("DELETE", f"/api/v1/namespaces/_/packages/{pkg}")
    assert_error(not_empty, 409, "Package not empty (contains 1 entity). Set force param or "
                                 "delete package contents.")


async def test_forbidden(api: Api) -> None:
    for path in ("/api/v1/namespaces/guest/actions", "/api/v1/namespaces/guest/limits",
                 "/api/v1/namespaces/guest/triggers/x"):
        reply = await api.call("GET", path)
        assert_error(reply, 403,
                     "The supplied authentication is not authorized to access this resource.")


# -- sizes and per-action limits ------------------------------------------------------------


async def test_payload_too_large(api: Api) -> None:
    name = new_name()
    await create(api, name)
    body = json.dumps({"x": "a" * (1024 * 1024)}).encode()
    reply = await api.call("POST", f"{ACTIONS}/{name}", data=body,
                           headers={"Content-Type": "application/json"})
    assert_error(reply, 413, f"Request larger than allowed: {len(body)} > 1048576 bytes.")


@pytest.mark.parametrize(("limits", "message"), [
    ({"timeout": 50}, "Timeout 50 milliseconds below allowed threshold of 100 milliseconds"),
    ({"timeout": 300001},
     "Timeout 300001 milliseconds exceeds allowed threshold of 300000 milliseconds"),
    ({"memory": 64}, "Memory 64 MB below allowed threshold of 128 MB"),
    ({"memory": 1024}, "Memory 1024 MB exceeds allowed threshold of 512 MB"),
    ({"logs": 11}, "Log size 11 MB exceeds allowed threshold of 10 MB"),
    ({"concurrency": 5}, "concurrency 5 exceeds allowed threshold of 1"),
])
async def test_action_limit_ranges(api: Api, limits: dict[str, int], message: str) -> None:
    reply = await api.call("PUT", f"{ACTIONS}/{new_name()}",
                           json={"exec": {"kind": "python:default", "code": CODE},
                                 "limits": limits})
    assert_error(reply, 400, message)


async def test_invoke_timeout_param(api: Api) -> None:
    name = new_name()
    await create(api, name)
    for bad in ("0", "60001", "x"):
        reply = await api.call("POST", f"{ACTIONS}/{name}?blocking=true&timeout={bad}")
        assert_error(reply, 400, "Timeout must be number of milliseconds up to 60000.")


# -- names, lists, activation ids -----------------------------------------------------------


async def test_entity_names(api: Api) -> None:
    body = {"exec": {"kind": "python:default", "code": CODE}}
    assert_error(await api.call("PUT", f"{ACTIONS}/bad%24name", json=body), 400,
                 "The name of the entity contains illegal characters.")
    assert_error(await api.call("PUT", f"{ACTIONS}/{'a' * 257}", json=body), 400,
                 "Name segement longer than allowed: 257 > 256.")
    assert_error(await api.call("PUT", "/api/v1/namespaces/_/packages/default", json={}), 400,
                 "Package name 'default' is reserved.")
    assert_error(await api.call("PUT", f"{ACTIONS}/{new_name()}", json={}), 400,
                 "exec undefined")


@pytest.mark.parametrize(("query", "message"), [
    ("limit=201", "The value '201' is not in the range of 0 to 200 for activations."),
    ("skip=-1", "The value '-1' is not greater than or equal to 0 for activations."),
    ("skip=x", "The value 'x' is not an integer for activations."),
    ("docs=true&count=true", "The parameter 'docs' is not permitted with 'count'."),
    ("name=a/b/c", "Parameter may be a 'simple' name or 'package-name/simple' name: a/b/c"),
    ("since=yesterday", "Parameter is not a valid value for epoch seconds: yesterday"),
    ("upto=x", "Parameter is not a valid value for epoch seconds: x"),
])
async def test_activation_list_params(api: Api, query: str, message: str) -> None:
    assert_error(await api.call("GET", f"/api/v1/namespaces/_/activations?{query}"), 400, message)


async def test_entity_list_params(api: Api) -> None:
    assert_error(await api.call("GET", f"{ACTIONS}?limit=201"), 400,
                 "The value '201' is not in the range of 0 to 200 for actions.")
    assert_error(await api.call("GET", "/api/v1/namespaces/_/triggers?skip=-1"), 400,
                 "The value '-1' is not greater than or equal to 0 for triggers.")


async def test_activation_id_formats(api: Api) -> None:
    base = "/api/v1/namespaces/_/activations/"
    for leaf in ("", "/result", "/logs"):
        assert_error(await api.call("GET", base + "abc" + leaf), 400,
                     "Activation id length is 3 but must be 32.")
        assert_error(await api.call("GET", base + "z" * 32 + leaf), 400,
                     "The activation id is not valid.")


async def test_reserved_parameters(api: Api) -> None:
    name = new_name()
    await create(api, name, parameters=[{"key": "fixed", "value": 1}],
                 annotations=[{"key": "final", "value": True}])
    reply = await api.call("POST", f"{ACTIONS}/{name}", json={"fixed": 2})
    assert_error(reply, 400,
                 "Request defines parameters that are not allowed (e.g., reserved properties).")


# -- namespace limits -----------------------------------------------------------------------


async def test_limits_default_and_per_namespace(api: Api, store: Store) -> None:
    reply = await api.call("GET", "/api/v1/namespaces/_/limits")
    assert reply.status == 200 and reply.body == DEFAULT_LIMITS
    assert list(reply.body) == list(DEFAULT_LIMITS)  # OpenWhisk's key order
    await store.set_limits(api.namespace, NamespaceLimits(concurrentInvocations=5))
    await store.set_limits(api.namespace, NamespaceLimits(firesPerMinute=7))
    own = await api.call("GET", f"/api/v1/namespaces/{api.namespace}/limits")
    assert own.body == DEFAULT_LIMITS | {"concurrentInvocations": 5, "firesPerMinute": 7,
                                         "maxActionInstances": 5}


# -- throttles ------------------------------------------------------------------------------


async def test_invocations_per_minute(api: Api, store: Store, invoker: FakeInvoker) -> None:
    name = new_name()
    await create(api, name)
    await store.set_limits(api.namespace, NamespaceLimits(invocationsPerMinute=2))
    await _same_minute()
    for _ in range(2):
        reply = await api.call("POST", f"{ACTIONS}/{name}")
        assert reply.status == 202, reply.body
    for count in (3, 4):
        assert_error(await api.call("POST", f"{ACTIONS}/{name}"), 429,
                     f"Too many requests in the last minute (count: {count}, allowed: 2).")
    # Nothing was published for the refused ones.
    assert invoker.arrived.qsize() == 2


async def test_concurrent_invocations(api: Api, store: Store, invoker: FakeInvoker) -> None:
    name = new_name()
    await create(api, name)
    await store.set_limits(api.namespace, NamespaceLimits(concurrentInvocations=1))
    first = await api.call("POST", f"{ACTIONS}/{name}")
    assert first.status == 202
    refused = await api.call("POST", f"{ACTIONS}/{name}?blocking=true")
    assert_error(refused, 429, "Too many concurrent requests in flight (count: 1, allowed: 1).")
    assert refused.headers.get("x-openwhisk-activation-id") is None
    assert await store.in_flight(api.namespace) == 1

    # The invoker's record write ends the flight: the slot is free again.
    request = await invoker.received(first.body["activationId"])
    assert await store.write_record(record_for(request, StatusCode.SUCCESS, {"ok": True}))
    assert await store.in_flight(api.namespace) == 0
    invoker.respond = lambda req: record_for(req, StatusCode.SUCCESS, {"n": 1})
    done = await api.call("POST", f"{ACTIONS}/{name}?blocking=true&result=true")
    assert done.status == 200 and done.body == {"n": 1}
    # The fake invoker answered without writing a record: that one is still counted.
    assert await store.in_flight(api.namespace) == 1


async def test_web_actions_are_throttled_as_the_owner(api: Api, store: Store) -> None:
    name = new_name()
    await create(api, name, annotations=[{"key": "web-export", "value": True}])
    await store.set_limits(api.namespace, NamespaceLimits(concurrentInvocations=0))
    reply = await api.call("GET", f"/api/v1/web/{api.namespace}/default/{name}.json", auth=None)
    assert_error(reply, 429, "Too many concurrent requests in flight (count: 0, allowed: 0).")


async def test_fires_per_minute(api: Api, store: Store) -> None:
    trigger = f"trg-{uuid.uuid4().hex[:6]}"
    put = await api.call("PUT", f"/api/v1/namespaces/_/triggers/{trigger}", json={})
    assert put.status == 200
    # Fires count against firesPerMinute only, not against invocations.
    await store.set_limits(api.namespace,
                           NamespaceLimits(firesPerMinute=2, invocationsPerMinute=0))
    await _same_minute()
    for _ in range(2):
        assert (await api.call("POST", f"/api/v1/namespaces/_/triggers/{trigger}")).status == 204
    assert_error(await api.call("POST", f"/api/v1/namespaces/_/triggers/{trigger}"), 429,
                 "Too many requests in the last minute (count: 3, allowed: 2).")


async def test_in_flight_ids_expire_at_their_deadline(store: Store) -> None:
    ns = f"ns-{uuid.uuid4().hex[:8]}"
    now = now_ms()
    args = {"per_minute": 100, "concurrent": 1}
    assert (await store.throttle_invoke(ns, "a" * 32, now=now, deadline=now + 1000,
                                        **args))[0] == 0
    assert await store.throttle_invoke(ns, "b" * 32, now=now + 999, deadline=now + 9000,
                                       **args) == (2, 1, 1)
    # Past a's deadline it no longer holds the slot (a lost activation cannot block forever).
    assert (await store.throttle_invoke(ns, "c" * 32, now=now + 1001, deadline=now + 9000,
                                        **args))[0] == 0


# -- ft admin -------------------------------------------------------------------------------


def _ft_admin(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FT_REDIS_URL": settings.redis_url}
    env.pop("FT_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "cli.main", "admin", *args], env=env,
                          capture_output=True, text=True, timeout=30)


async def test_admin_users_and_limits(settings: Settings, base_url: str) -> None:
    ns = f"adm-{uuid.uuid4().hex[:8]}"
    created = await asyncio.to_thread(_ft_admin, settings, "user", "create", ns)
    assert created.returncode == 0, created.stderr
    subject, key = created.stdout.strip().split(":")
    assert len(key) == 64 and uuid.UUID(subject)
    listed = await asyncio.to_thread(_ft_admin, settings, "user", "list", ns)
    assert listed.stdout.split()[0] == subject and key not in listed.stdout
    again = await asyncio.to_thread(_ft_admin, settings, "user", "create", ns)
    assert again.returncode == 1 and "already exists" in again.stderr

    limits = await asyncio.to_thread(_ft_admin, settings, "limits", "set", ns,
                                     "--invocationsPerMinute", "3", "--firesPerMinute", "4")
    assert limits.returncode == 0 and limits.stdout.strip() == "Limits updated"
    got = await asyncio.to_thread(_ft_admin, settings, "limits", "get", ns)
    assert got.stdout.splitlines() == ["invocationsPerMinute = 3", "firesPerMinute = 4"]

    async with aiohttp.ClientSession(base_url=base_url) as http:
        client = Api(http, subject, key, ns)
        assert (await client.call("GET", "/api/v1/namespaces")).body == [ns]
        shown = await client.call("GET", "/api/v1/namespaces/_/limits")
        assert shown.body["invocationsPerMinute"] == 3 and shown.body["firesPerMinute"] == 4

    deleted = await asyncio.to_thread(_ft_admin, settings, "user", "delete", subject)
    assert deleted.returncode == 0 and deleted.stdout.strip() == "Subject deleted"
    gone = await asyncio.to_thread(_ft_admin, settings, "user", "list", ns)
    assert gone.stdout == ""
    missing = await asyncio.to_thread(_ft_admin, settings, "user", "delete", subject)
    assert missing.returncode == 1 and "does not exist" in missing.stderr


# -- CLI: namespace list/get, activation poll -----------------------------------------------


async def _ft(capsys: pytest.CaptureFixture[str], api: Api, base_url: str,
              *args: str) -> tuple[int, str]:
    capsys.readouterr()
    argv = [*args, "--apihost", base_url, "-u", f"{api.uuid}:{api.key}"]
    code = await asyncio.to_thread(ft_main, argv)
    return code, capsys.readouterr().out


async def test_cli_namespaces(api: Api, base_url: str, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("WSK_CONFIG_FILE", str(tmp_path / "wskprops"))
    name = new_name()
    await create(api, name)
    trigger = f"trg-{uuid.uuid4().hex[:6]}"
    await api.call("PUT", f"/api/v1/namespaces/_/triggers/{trigger}", json={})
    code, out = await _ft(capsys, api, base_url, "namespace", "list")
    assert code == 0 and out.splitlines() == ["namespaces", api.namespace]
    code, out = await _ft(capsys, api, base_url, "namespace", "get")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Entities in namespace: default"
    assert [line for line in lines if not line.startswith("/")][1:] == [
        "packages", "actions", "triggers", "rules"]
    assert any(line.startswith(f"/{api.namespace}/{name} ") for line in lines)
    assert any(line.startswith(f"/{api.namespace}/{trigger} ") for line in lines)


async def test_cli_activation_poll(api: Api, base_url: str, store: Store,
                                   capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                   invoker: FakeInvoker) -> None:
    monkeypatch.setenv("WSK_CONFIG_FILE", str(tmp_path / "wskprops"))
    name = new_name()
    await create(api, name)
    reply = await api.call("POST", f"{ACTIONS}/{name}")
    request = await invoker.received(reply.body["activationId"])
    logline = "2026-01-01T00:00:00.000000Z stdout: hello from poll"
    await store.write_record(record_for(request, StatusCode.SUCCESS, {}, logs=[logline]))
    code, out = await _ft(capsys, api, base_url, "activation", "poll", "--exit", "1",
                          "--since-seconds", "60")
    assert code == 0
    assert f"Activation: '{name}' ({request.activation_id})" in out
    assert logline in out
    assert out.count("Activation: ") == 1  # the second round shows nothing again
