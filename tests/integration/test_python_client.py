"""The Python client (``funtainer``) against the real platform, sync and asyncio: invoking,
handles that wait without polling, deploying functions (with requirements), triggers and
rules, activations, and every typed error. Client logic, so on the Docker cluster only."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cli.cluster import free_port
from funtainer import (
    ActivationFailed,
    ActivationTimeout,
    AsyncClient,
    Client,
    Conflict,
    NotFound,
    PackagingError,
    Unauthorized,
    Unreachable,
)
from funtainer.config import ENV_APIHOST, ENV_AUTH, load_config
from tests.cluster_fixtures import Cluster

ECHO = '''
def main(args):
    import time
    time.sleep(args.get("sleep", 0))
    print("echo", sorted(args))
    if args.get("fail"):
        return {"error": "asked to fail"}
    return {"args": args}
'''


def _name(what: str) -> str:
    return f"py-{what}-{uuid.uuid4().hex[:6]}"


class Requests:
    """Counts the HTTP requests a client sends (an httpx event hook)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, request: httpx.Request) -> None:
        self.sent.append(f"{request.method} {request.url.path}")

    async def on_async(self, request: httpx.Request) -> None:
        self(request)


@pytest.fixture
def client(docker_cluster: Cluster) -> Iterator[Client]:
    with Client(docker_cluster.api_host, docker_cluster.auth) as made:
        yield made


@pytest.fixture
def echo(client: Client) -> Iterator[str]:
    name = _name("echo")
    client.actions.create(name, ECHO, kind="python:3.11", timeout=20)
    yield name
    client.actions.delete(name)


def test_config_reads_wskprops_and_the_action_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = tmp_path / "props"
    props.write_text("APIHOST=http://127.0.0.1:1\nAUTH=a:b\nNAMESPACE=ns1\n")
    monkeypatch.setenv("WSK_CONFIG_FILE", str(props))
    monkeypatch.delenv(ENV_APIHOST, raising=False)
    monkeypatch.delenv(ENV_AUTH, raising=False)
    assert load_config().auth == "a:b"
    assert Client().config.namespace == "ns1"
    monkeypatch.setenv(ENV_APIHOST, "http://127.0.0.1:2")
    monkeypatch.setenv(ENV_AUTH, "c:d")
    inside_an_action = load_config()
    assert (inside_an_action.apihost, inside_an_action.auth) == ("http://127.0.0.1:2", "c:d")
    assert load_config(auth="e:f").auth == "e:f"  # what is given wins


def test_invoke_returns_the_result_and_raises_failures(client: Client, echo: str) -> None:
    assert client.actions.invoke(echo, {"x": 1}) == {"args": {"x": 1}}
    with pytest.raises(ActivationFailed) as failed:
        client.actions.invoke(echo, {"fail": True})
    assert failed.value.status == "application error"
    assert failed.value.error == "asked to fail"
    record = client.activations.get(failed.value.activation_id)
    assert record["response"]["success"] is False


def test_a_handle_waits_for_the_result_with_one_request(
    docker_cluster: Cluster, echo: str
) -> None:
    requests = Requests()
    with Client(docker_cluster.api_host, docker_cluster.auth,
                event_hooks={"request": [requests]}) as client:
        handle = client.actions.invoke_async(echo, {"sleep": 1, "n": 7})
        assert len(handle.id) == 32 and not handle.done
        assert handle.result(timeout=30) == {"args": {"sleep": 1, "n": 7}}
        # The gateway held the request until the record was written: no polling loop.
        assert [s.split()[0] for s in requests.sent] == ["POST", "GET"]
        assert any("echo" in line for line in handle.logs())
        assert handle.wait()["activationId"] == handle.id
        assert len(requests.sent) == 2  # the record is kept once seen


def test_a_timeout_leaves_the_activation_running_and_a_new_handle_finds_it(
    client: Client, echo: str
) -> None:
    with pytest.raises(ActivationTimeout) as slow:
        client.actions.invoke(echo, {"sleep": 1.2}, timeout=0.3)
    handle = client.activations.handle(slow.value.activation_id)
    with pytest.raises(ActivationTimeout):
        handle.result(timeout=0.1)
    assert handle.result(timeout=30) == {"args": {"sleep": 1.2}}


def test_typed_errors_carry_openwhisk_error_json(
    docker_cluster: Cluster, client: Client, echo: str
) -> None:
    with pytest.raises(NotFound) as missing:
        client.actions.get(_name("absent"))
    assert missing.value.status == 404
    assert missing.value.error == "The requested resource does not exist."
    assert missing.value.code and missing.value.body["code"] == missing.value.code
    with pytest.raises(Conflict):
        client.actions.create(echo, ECHO, overwrite=False)
    with Client(docker_cluster.api_host, "nobody:wrong") as stranger, \
            pytest.raises(Unauthorized):
        stranger.actions.list()
    with Client(f"http://127.0.0.1:{free_port()}", "a:b") as nowhere, \
            pytest.raises(Unreachable, match="connection refused"):
        nowhere.actions.list()


def test_collections_list_get_and_delete(client: Client, echo: str) -> None:
    assert echo in {a["name"] for a in client.actions.list(limit=200)}
    got = client.actions.get(echo)
    assert got["exec"]["kind"] == "python:3.11" and got["limits"]["timeout"] == 20_000
    client.actions.invoke(echo, {"listed": True})
    listed = client.activations.list(echo, limit=5, docs=True)
    assert listed[0]["name"] == echo and listed[0]["response"]["result"]["args"]["listed"]


def _square(params):
    n = params["n"]
    return {"square": n * n}


def test_deploy_ships_a_function_under_its_own_name(client: Client) -> None:
    name = _name("square")
    square = client.actions.deploy(_square, name, memory=128, timeout=10)
    try:
        assert square.invoke(n=9) == {"square": 81}
        assert square({"n": 3}) == {"square": 9}  # called directly it runs here
        got = client.actions.get(name)
        assert got["exec"]["main"] == "_square" and got["limits"]["memory"] == 128
        assert "def _square(params)" in got["exec"]["code"]
    finally:
        client.actions.delete(name)


def _wheel(root: Path, package: str, code: str) -> Path:
    """A pure-Python wheel of one module, built by hand (no network, no build backend)."""
    dist = f"{package}-1.0.dist-info"
    files = {
        f"{package}/__init__.py": code,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    wheel = root / f"{package}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def test_decorator_ships_requirements_in_a_zip(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the wheel is local; nothing is downloaded
    package = f"greeter_{uuid.uuid4().hex[:6]}"
    wheel = _wheel(tmp_path, package, "def greet(who):\n    return 'hello ' + who\n")
    name = _name("greet")
    source = f'''
def greet(params):
    import {package}
    return {{"greeting": {package}.greet(params["who"])}}
'''
    module = tmp_path / "greet_module.py"
    module.write_text(source)  # where inspect reads the source from
    namespace: dict[str, object] = {}
    exec(compile(source, str(module), "exec"), namespace)

    greet = client.action(name=name, memory=128, requirements=[str(wheel)])(namespace["greet"])
    try:
        assert not greet.deployed
        assert greet.invoke_async(who="zip").result(timeout=30) == {"greeting": "hello zip"}
        got = client.actions.get(name)
        assert got["exec"]["binary"] is True
        shipped = zipfile.ZipFile(io.BytesIO(base64.b64decode(got["exec"]["code"])))
        assert {"__main__.py", f"{package}/__init__.py"} <= set(shipped.namelist())
    finally:
        client.actions.delete(name)
    with pytest.raises(PackagingError, match="pip could not install"):
        client.action(name=name, requirements=["no-such-package-here==0"])(_square).deploy()
    with pytest.raises(PackagingError, match="enclosing function"):
        client.actions.deploy(_closure_over(2), name)


def _closure_over(outer: int):
    def times(params):
        return {"n": params["n"] * outer}

    return times


def test_triggers_fire_rules_into_activations(client: Client, echo: str) -> None:
    trigger, rule = _name("trigger"), _name("rule")
    client.triggers.create(trigger, params={"from": "trigger"})
    client.rules.create(rule, trigger, echo)
    try:
        fired = client.triggers.fire(trigger, {"fired": 1})
        assert fired is not None
        # The trigger's record lists what each rule started (OpenWhisk's JSON log lines).
        started = [json.loads(line) for line in
                   client.activations.handle(fired).logs(timeout=30)]
        assert [entry["action"].split("/")[-1] for entry in started] == [echo]
        ran = client.activations.handle(started[0]["activationId"]).wait(timeout=30)
        assert ran["cause"] == fired
        args = ran["response"]["result"]["args"]
        assert (args["from"], args["fired"]) == ("trigger", 1)
        client.rules.disable(rule)
        assert client.triggers.fire(trigger) is None  # no active rule: nothing ran
    finally:
        client.rules.delete(rule)
        client.triggers.delete(trigger)


async def test_asyncio_client_does_the_same_with_await(
    docker_cluster: Cluster, echo: str
) -> None:
    requests = Requests()
    async with AsyncClient(docker_cluster.api_host, docker_cluster.auth,
                           event_hooks={"request": [requests.on_async]}) as client:
        assert await client.actions.invoke(echo, {"a": 1}) == {"args": {"a": 1}}
        handles = [await client.actions.invoke_async(echo, {"i": i, "sleep": 1})
                   for i in range(3)]
        requests.sent.clear()
        results = await asyncio.gather(*handles)  # `await handle` is its result
        assert results == [{"args": {"i": i, "sleep": 1}} for i in range(3)]
        assert len(requests.sent) == 3
        assert any("echo" in line for line in await handles[0].logs())
        with pytest.raises(ActivationFailed, match="asked to fail"):
            await client.actions.invoke(echo, {"fail": True})
        with pytest.raises(NotFound):
            await client.activations.get(uuid.uuid4().hex)

        @client.action(name=_name("cube"), timeout=10)
        def cube(params):
            return {"cube": params["n"] ** 3}

        try:
            assert await (await cube.invoke_async(n=3)) == {"cube": 27}
        finally:
            await client.actions.delete(cube.options.name)
