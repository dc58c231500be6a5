"""Packages, bindings, actions inside packages and the system catalog: the gateway against the
real Redis and RabbitMQ with a fake invoker (exact JSON and messages), then the whole cluster
for real invokes of catalog actions, and the ``ft package`` commands."""

# The gateway module's fixtures are imported to be used by name as test arguments.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bus.broker import ACTIVATIONS, Broker
from bus.config import Settings
from bus.models import NamespaceAuth, StatusCode
from bus.store import Store
from gateway.app import build_app
from gateway.catalog import SYSTEM_KEY, SYSTEM_UUID, install_catalog
from gateway.validation import GatewayLimits
from tests.cluster_fixtures import Cluster
from tests.conftest import fresh_vhost
from tests.integration.conftest import BACKEND_NEUTRAL
from tests.integration.test_gateway import (  # noqa: F401  (fixtures, used by name)
    CODE,
    CODE_LIMIT,
    Api,
    FakeInvoker,
    Gateway,
    _start,
    api,
    assert_error,
    record_for,
)

NOT_FOUND = "The requested resource does not exist."
FORBIDDEN = "The supplied authentication is not authorized to access this resource."
PYTHON = {"kind": "python:default", "code": CODE}


@pytest.fixture(scope="module")
def fake_amqp_url(settings: Settings) -> Iterator[str]:
    """The fake-invoker tests' own vhost: on the session's, the cluster's initializer would
    take the activations the fake invoker waits for. (Not an override of ``settings``: the
    session-wide ``cluster`` needs that one.)"""
    with fresh_vhost("ft-test-pkg") as amqp_url:
        yield amqp_url


@pytest.fixture
async def fake_broker(fake_amqp_url: str) -> AsyncIterator[Broker]:
    b = await Broker.connect(fake_amqp_url, name="test-packages")
    yield b
    await b.close()


@pytest.fixture
async def gateway(
    settings: Settings, fake_amqp_url: str, store: Store, fake_broker: Broker
) -> AsyncIterator[Gateway]:
    app = build_app(settings.model_copy(update={"amqp_url": fake_amqp_url}), store, fake_broker,
                    limits=GatewayLimits(code_bytes=CODE_LIMIT))
    runner, port = await _start(app)
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
        yield Gateway(app, Api(http, settings.guest_uuid, settings.guest_key, "guest"), runner)
    await runner.cleanup()


@pytest.fixture
async def invoker(fake_broker: Broker) -> FakeInvoker:
    fake = FakeInvoker(fake_broker)
    await fake_broker.consume(ACTIVATIONS, fake.on_message, prefetch=50)
    return fake


def new_name(prefix: str = "pkg") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def other_api(gateway: Gateway, store: Store) -> Api:
    """A second fresh namespace beside ``api``'s."""
    ns = f"ns-{uuid.uuid4().hex[:10]}"
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32), namespace=ns)
    await store.put_auth(auth)
    return Api(gateway.api.http, auth.uuid, auth.key, ns)


async def put_package(api: Api, name: str, ns: str = "_", **body: Any) -> dict[str, Any]:
    reply = await api.call("PUT", f"/api/v1/namespaces/{ns}/packages/{name}", json=body)
    assert reply.status == 200, reply.body
    return reply.body


async def put_action(api: Api, path: str, **body: Any) -> dict[str, Any]:
    body.setdefault("exec", PYTHON)
    reply = await api.call("PUT", f"/api/v1/namespaces/_/actions/{path}", json=body)
    assert reply.status == 200, reply.body
    return reply.body


# -- packages -------------------------------------------------------------------------------


async def test_package_create_get_update_list_delete(api: Api) -> None:
    name = new_name()
    path = f"/api/v1/namespaces/_/packages/{name}"
    created = await put_package(api, name)
    assert created == {
        "namespace": api.namespace, "name": name, "version": "0.0.1", "publish": False,
        "binding": {}, "parameters": [], "annotations": [], "updated": created["updated"],
    }
    assert (await api.call("GET", path)).body == {**created, "actions": [], "feeds": []}
    assert_error(await api.call("PUT", path, json={}), 409, "resource already exists")

    updated = (await api.call("PUT", path, params={"overwrite": "true"}, json={
        "publish": True, "parameters": [{"key": "a", "value": 1}],
        "annotations": [{"key": "description", "value": "d"}],
    })).body
    assert updated["version"] == "0.0.2" and updated["publish"] is True
    assert updated["parameters"] == [{"key": "a", "value": 1}]
    assert updated["annotations"] == [{"key": "description", "value": "d"}]
    kept = (await api.call("PUT", path, params={"overwrite": "true"}, json={})).body
    assert kept["version"] == "0.0.3" and kept["parameters"] == [{"key": "a", "value": 1}]

    listed = (await api.call("GET", "/api/v1/namespaces/_/packages")).body
    assert listed == [{
        "namespace": api.namespace, "name": name, "version": "0.0.3", "publish": True,
        "annotations": [{"key": "description", "value": "d"}], "binding": False,
        "updated": kept["updated"],
    }]
    count = await api.call("GET", "/api/v1/namespaces/_/packages", params={"count": "true"})
    assert count.body == {"packages": 1}

    deleted = await api.call("DELETE", path)
    assert deleted.status == 200 and deleted.body == kept
    assert_error(await api.call("GET", path), 404, NOT_FOUND)
    assert_error(await api.call("DELETE", path), 404, NOT_FOUND)


async def test_package_name_default_is_reserved(api: Api) -> None:
    reply = await api.call("PUT", "/api/v1/namespaces/_/packages/default", json={})
    assert_error(reply, 400, "Package name 'default' is reserved.")


async def test_delete_non_empty_package_needs_force(api: Api) -> None:
    name = new_name()
    await put_package(api, name)
    await put_action(api, f"{name}/one")
    path = f"/api/v1/namespaces/_/packages/{name}"
    assert_error(await api.call("DELETE", path), 409,
                 "Package not empty (contains 1 entity). Set force param or delete package "
                 "contents.")
    await put_action(api, f"{name}/two")
    assert_error(await api.call("DELETE", path), 409,
                 "Package not empty (contains 2 entities). Set force param or delete package "
                 "contents.")
    assert (await api.call("DELETE", path, params={"force": "true"})).status == 200
    gone = await api.call("GET", f"/api/v1/namespaces/_/actions/{name}/one")
    assert_error(gone, 404, NOT_FOUND)


async def test_actions_inside_a_package(api: Api) -> None:
    pkg = new_name()
    await put_package(api, pkg)
    created = await put_action(api, f"{pkg}/hello", annotations=[{"key": "feed", "value": 1}])
    assert created["namespace"] == f"{api.namespace}/{pkg}" and created["name"] == "hello"
    await put_action(api, f"{pkg}/plain")
    path = f"/api/v1/namespaces/_/actions/{pkg}/hello"
    assert (await api.call("GET", path)).body == created
    no_code = (await api.call("GET", path, params={"code": "false"})).body
    assert "code" not in no_code["exec"]
    assert_error(await api.call("PUT", path, json={"exec": PYTHON}), 409,
                 "resource already exists")

    # Packaged actions are listed with their package, not with the namespace's own.
    assert (await api.call("GET", "/api/v1/namespaces/_/actions")).body == []
    listed = (await api.call("GET", f"/api/v1/namespaces/_/actions/{pkg}/")).body
    assert sorted(a["name"] for a in listed) == ["hello", "plain"]
    assert {a["namespace"] for a in listed} == {f"{api.namespace}/{pkg}"}

    got = (await api.call("GET", f"/api/v1/namespaces/_/packages/{pkg}")).body
    assert [a["name"] for a in got["actions"]] == ["plain"]
    assert [a["name"] for a in got["feeds"]] == ["hello"]
    assert set(got["feeds"][0]) == {"name", "version", "annotations"}

    missing = await api.call("PUT", "/api/v1/namespaces/_/actions/nopkg/x", json={"exec": PYTHON})
    assert_error(missing, 404, NOT_FOUND)
    deleted = await api.call("DELETE", path)
    assert deleted.status == 200 and deleted.body == created
    assert_error(await api.call("DELETE", path), 404, NOT_FOUND)


async def test_sequence_inside_a_package(api: Api) -> None:
    pkg = new_name()
    await put_package(api, pkg)
    await put_action(api, f"{pkg}/step")
    created = await put_action(api, f"{pkg}/seq", exec={
        "kind": "sequence", "components": [f"{pkg}/step", "/whisk.system/utils/echo"]})
    assert created["exec"]["components"] == [
        f"/{api.namespace}/{pkg}/step", "/whisk.system/utils/echo"]
    looped = await api.call("PUT", f"/api/v1/namespaces/_/actions/{pkg}/seq",
                            params={"overwrite": "true"},
                            json={"exec": {"kind": "sequence", "components": [f"{pkg}/seq"]}})
    assert_error(looped, 400, "Sequence may not refer to itself.")


# -- bindings -------------------------------------------------------------------------------


async def test_bindings(api: Api) -> None:
    pkg, bound = new_name(), new_name("bind")
    await put_package(api, pkg, parameters=[{"key": "a", "value": 1}, {"key": "b", "value": 1}])
    await put_action(api, f"{pkg}/hello")
    binding = await put_package(api, bound, binding={"namespace": "_", "name": pkg},
                                parameters=[{"key": "b", "value": 2}])
    ref = {"namespace": api.namespace, "name": pkg}
    assert binding["binding"] == ref
    assert binding["annotations"] == [{"key": "binding", "value": ref}]

    got = (await api.call("GET", f"/api/v1/namespaces/_/packages/{bound}")).body
    assert got["parameters"] == [{"key": "a", "value": 1}, {"key": "b", "value": 2}]
    assert [a["name"] for a in got["actions"]] == ["hello"] and got["binding"] == ref
    listed = (await api.call("GET", "/api/v1/namespaces/_/packages")).body
    assert {p["name"]: p["binding"] for p in listed} == {pkg: False, bound: ref}
    through = await api.call("GET", f"/api/v1/namespaces/_/actions/{bound}/hello")
    assert through.status == 200 and through.body["namespace"] == f"{api.namespace}/{pkg}"
    assert through.body["parameters"] == [{"key": "a", "value": 1}, {"key": "b", "value": 2}]

    again = await api.call("PUT", "/api/v1/namespaces/_/packages/x",
                           json={"binding": {"namespace": api.namespace, "name": bound}})
    assert_error(again, 400, "Cannot bind to another package binding.")
    nothing = await api.call("PUT", "/api/v1/namespaces/_/packages/x",
                             json={"binding": {"namespace": "_", "name": "nope"}})
    assert_error(nothing, 400, "Binding references a package that does not exist.")
    convert = await api.call("PUT", f"/api/v1/namespaces/_/packages/{pkg}",
                             params={"overwrite": "true"},
                             json={"binding": {"namespace": "_", "name": pkg}})
    assert_error(convert, 409, "Resource is a package and cannot be converted into a binding.")
    write = await api.call("PUT", f"/api/v1/namespaces/_/actions/{bound}/new",
                           json={"exec": PYTHON})
    assert_error(write, 400, "Operation not permitted on package binding.")
    # A binding holds nothing: it is deleted without force.
    assert (await api.call("DELETE", f"/api/v1/namespaces/_/packages/{bound}")).status == 200


async def test_invoke_through_binding_layers_parameters(
    api: Api, invoker: FakeInvoker
) -> None:
    pkg, bound = new_name(), new_name("bind")
    await put_package(api, pkg, parameters=[
        {"key": "p", "value": "package"}, {"key": "b", "value": "package"},
        {"key": "a", "value": "package"}, {"key": "i", "value": "package"}])
    await put_action(api, f"{pkg}/echo", parameters=[
        {"key": "a", "value": "action"}, {"key": "i", "value": "action"}])
    await put_package(api, bound, binding={"name": pkg}, parameters=[
        {"key": "b", "value": "binding"}, {"key": "a", "value": "binding"}])
    invoker.respond = lambda req: record_for(req, StatusCode.SUCCESS, req.payload)
    reply = await api.call("POST", f"/api/v1/namespaces/_/actions/{bound}/echo",
                           params={"blocking": "true", "result": "true"}, json={"i": "invoke"})
    assert reply.status == 200, reply.body
    assert reply.body == {"p": "package", "b": "binding", "a": "action", "i": "invoke"}
    request = await invoker.received(reply.headers["x-openwhisk-activation-id"])
    assert request.action.path == f"{api.namespace}/{pkg}/echo"
    assert request.invoking_namespace == api.namespace


async def test_public_packages_across_namespaces(
    api: Api, gateway: Gateway, store: Store, invoker: FakeInvoker
) -> None:
    other = await other_api(gateway, store)
    public, private = new_name("pub"), new_name("priv")
    await put_package(api, public, publish=True)
    await put_package(api, private)
    await put_action(api, f"{public}/hello")
    await put_action(api, f"{private}/hello")
    base = f"/api/v1/namespaces/{api.namespace}"

    assert (await other.call("GET", f"{base}/packages/{public}")).status == 200
    assert_error(await other.call("GET", f"{base}/packages/{private}"), 403, FORBIDDEN)
    listed = (await other.call("GET", f"{base}/packages")).body
    assert [p["name"] for p in listed] == [public]
    assert (await other.call("GET", f"{base}/packages", params={"count": "true"})).body == {
        "packages": 1}
    assert (await other.call("GET", f"{base}/actions/{public}/hello")).status == 200
    assert_error(await other.call("GET", f"{base}/actions/{private}/hello"), 403, FORBIDDEN)
    assert_error(await other.call("PUT", f"{base}/packages/x", json={}), 403, FORBIDDEN)
    assert_error(await other.call("DELETE", f"{base}/packages/{public}"), 403, FORBIDDEN)
    assert_error(await other.call("PUT", f"{base}/actions/{public}/new",
                                  json={"exec": PYTHON}), 403, FORBIDDEN)
    assert_error(await other.call("GET", f"{base}/actions"), 403, FORBIDDEN)

    reply = await other.call("POST", f"{base}/actions/{public}/hello", json={"x": 1})
    assert reply.status == 202, reply.body
    request = await invoker.received(reply.body["activationId"])
    assert request.invoking_namespace == other.namespace
    assert request.action.path == f"{api.namespace}/{public}/hello"
    assert_error(await other.call("POST", f"{base}/actions/{private}/hello"), 403, FORBIDDEN)

    # Binding another namespace's package: published ones only.
    ok = await put_package(other, "mine", binding={"namespace": api.namespace, "name": public})
    assert ok["binding"] == {"namespace": api.namespace, "name": public}
    refused = await other.call("PUT", "/api/v1/namespaces/_/packages/theirs",
                               json={"binding": {"namespace": api.namespace, "name": private}})
    assert_error(refused, 403, FORBIDDEN)


# -- the system catalog ---------------------------------------------------------------------


async def test_catalog_is_public_and_installed_once(api: Api, store: Store) -> None:
    utils = (await api.call("GET", "/api/v1/namespaces/whisk.system/packages/utils")).body
    assert utils["publish"] is True and utils["binding"] == {}
    assert sorted(a["name"] for a in utils["actions"]) == ["echo", "sort"]
    sort = (await api.call("GET", "/api/v1/namespaces/whisk.system/actions/utils/sort")).body
    assert sort["namespace"] == "whisk.system/utils" and sort["exec"]["kind"] == "nodejs:18"
    assert "lines.sort()" in sort["exec"]["code"]
    assert await store.authenticate(SYSTEM_UUID, SYSTEM_KEY) == "whisk.system"

    await install_catalog(store)  # a second gateway starting: nothing changes
    again = (await api.call("GET", "/api/v1/namespaces/whisk.system/packages/utils")).body
    assert again == utils


async def test_catalog_actions_invoke_through_feed_route(api: Api, invoker: FakeInvoker) -> None:
    """``/whisk.system/<pkg>/<action>`` POSTs first meet the built-in feeds' route."""
    invoker.respond = lambda req: record_for(req, StatusCode.SUCCESS, {"lines": []})
    reply = await api.call("POST", "/api/v1/namespaces/whisk.system/actions/utils/sort",
                           params={"blocking": "true"}, json={})
    assert reply.status == 200, reply.body
    request = await invoker.received(reply.body["activationId"])
    assert request.action.path == "whisk.system/utils/sort"
    missing = await api.call("POST", "/api/v1/namespaces/whisk.system/actions/utils/nope")
    assert_error(missing, 404, NOT_FOUND)


# -- on the real cluster --------------------------------------------------------------------


async def _cluster_call(
    cluster: Cluster, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    async with aiohttp.ClientSession(cluster.api_host, headers=cluster.auth_header) as http:
        async with http.request(method, path, **kwargs) as response:
            return response.status, await response.json()


async def test_cluster_runs_catalog_and_bound_actions(cluster: Cluster) -> None:
    status, body = await _cluster_call(
        cluster, "POST", "/api/v1/namespaces/whisk.system/actions/utils/sort",
        params={"blocking": "true", "result": "true"}, json={"lines": ["b", "c", "a"]})
    assert (status, body) == (200, {"lines": ["a", "b", "c"], "length": 3})

    bound = new_name("bind")
    status, _ = await _cluster_call(
        cluster, "PUT", f"/api/v1/namespaces/_/packages/{bound}",
        json={"binding": {"namespace": "whisk.system", "name": "utils"},
              "parameters": [{"key": "from", "value": "binding"}]})
    assert status == 200
    status, body = await _cluster_call(
        cluster, "POST", f"/api/v1/namespaces/_/actions/{bound}/echo",
        params={"blocking": "true"}, json={"x": 1})
    assert status == 200, body
    assert body["response"]["result"] == {"from": "binding", "x": 1}
    assert {"key": "path", "value": "whisk.system/utils/echo"} in body["annotations"]
    assert body["namespace"] == "guest"


async def test_cluster_rule_fires_catalog_action(cluster: Cluster) -> None:
    """A rule's action may be a public catalog action (the npm client's trigger test)."""
    trigger, rule = new_name("trg"), new_name("rule")
    assert (await _cluster_call(cluster, "PUT", f"/api/v1/namespaces/_/triggers/{trigger}",
                                json={}))[0] == 200
    status, body = await _cluster_call(
        cluster, "PUT", f"/api/v1/namespaces/_/rules/{rule}",
        json={"trigger": f"/_/{trigger}", "action": "/whisk.system/utils/echo"})
    assert status == 200, body
    assert body["action"] == {"path": "whisk.system/utils", "name": "echo"}
    status, fired = await _cluster_call(cluster, "POST", f"/api/v1/namespaces/_/triggers/{trigger}",
                                        json={"hello": "world"})
    assert status == 202, fired
    for _ in range(100):
        status, record = await _cluster_call(
            cluster, "GET", f"/api/v1/namespaces/_/activations/{fired['activationId']}")
        if status == 200 and record["logs"]:
            break
        await asyncio.sleep(0.1)
    outcome = json.loads(record["logs"][0])
    assert outcome["success"] is True and outcome["action"] == "whisk.system/utils/echo"
    for _ in range(100):
        status, echoed = await _cluster_call(
            cluster, "GET", f"/api/v1/namespaces/_/activations/{outcome['activationId']}")
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert echoed["response"]["result"]["hello"] == "world"
    await _cluster_call(cluster, "DELETE", f"/api/v1/namespaces/_/rules/{rule}")
    await _cluster_call(cluster, "DELETE", f"/api/v1/namespaces/_/triggers/{trigger}")


# -- the CLI --------------------------------------------------------------------------------


def _ft(cluster: Cluster, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "FT_APIHOST": cluster.api_host,
           "FT_AUTH": cluster.auth, "WSK_CONFIG_FILE": str(home / ".wskprops")}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=60)


@BACKEND_NEUTRAL
async def test_cli_packages(cluster: Cluster, tmp_path: Path) -> None:
    (tmp_path / ".wskprops").write_text(f"APIHOST={cluster.api_host}\nAUTH={cluster.auth}\n")
    pkg, bound = new_name("clipkg"), new_name("clibind")

    def ft(*args: str) -> str:
        done = _ft(cluster, tmp_path, *args)
        assert done.returncode == 0, done.stderr + done.stdout
        return done.stdout

    assert ft("package", "create", pkg, "-p", "a", "1").strip() == f"ok: created package {pkg}"
    assert ft("package", "update", pkg, "--shared", "yes").strip() == (
        f"ok: updated package {pkg}")
    code = tmp_path / "hello.py"
    code.write_text(CODE)
    assert ft("action", "create", f"{pkg}/hello", str(code)).strip() == (
        f"ok: created action {pkg}/hello")
    assert ft("package", "bind", pkg, bound, "-p", "b", "2").strip() == (
        f"ok: created binding {bound}")
    got = ft("package", "get", pkg)
    assert got.startswith(f"ok: got package {pkg}\n")
    doc = json.loads(got.split("\n", 1)[1])
    assert doc["publish"] is True and doc["parameters"] == [{"key": "a", "value": 1}]
    assert [a["name"] for a in doc["actions"]] == ["hello"]
    listed = ft("package", "list")
    assert listed.splitlines()[0] == "packages"
    assert f"/guest/{pkg}" in listed and "shared" in listed
    assert any(line.startswith(f"/guest/{bound}") and line.endswith("private")
               for line in listed.splitlines())
    assert ft("package", "delete", bound).strip() == f"ok: deleted package {bound}"
    refused = _ft(cluster, tmp_path, "package", "delete", pkg)
    assert refused.returncode != 0 and "Package not empty" in refused.stderr
    await asyncio.sleep(0)
    assert ft("action", "delete", f"{pkg}/hello").strip() == f"ok: deleted action {pkg}/hello"
    assert ft("package", "delete", pkg).strip() == f"ok: deleted package {pkg}"
