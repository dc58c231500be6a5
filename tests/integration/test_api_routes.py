"""API routes (gateway/api_routes.py) as OpenWhisk clients use them: created, listed and
deleted through whisk.system's apimgmt web actions, and called at
/api/<namespace>/<base path>/<path> with path parameters and each response type. Gateway
logic alone, so on the Docker cluster only."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster_fixtures import Cluster

MGMT = "/api/v1/web/whisk.system/apimgmt"
REPO_ROOT = Path(__file__).resolve().parents[2]
BOOKS = '''
def main(args):
    return {"statusCode": 200, "headers": {"X-Book": str(args.get("id"))},
            "body": {"id": args.get("id"), "q": args.get("q"), "method": args["__ow_method"]},
            "text": "book " + str(args.get("id"))}
'''


@pytest.fixture
async def client(docker_cluster: Cluster) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=docker_cluster.api_host,
                                     headers=docker_cluster.auth_header) as session:
        yield session


@pytest.fixture
async def anonymous(docker_cluster: Cluster) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=docker_cluster.api_host) as session:
        yield session


async def _web_action(client: aiohttp.ClientSession, name: str) -> None:
    body = {"exec": {"kind": "python:3.11", "code": BOOKS},
            "annotations": [{"key": "web-export", "value": True}]}
    async with client.put(f"/api/v1/namespaces/_/actions/{name}", json=body) as resp:
        assert resp.status == 200, await resp.text()


async def _create(client: aiohttp.ClientSession, base: str, path: str, method: str,
                  action: str, response_type: str = "json") -> dict[str, Any]:
    apidoc = {"namespace": "_", "gatewayBasePath": base, "gatewayPath": path,
              "gatewayMethod": method, "id": f"API:_:{base}", "apiName": base.strip("/"),
              "action": {"name": action, "namespace": "_", "backendMethod": "GET",
                         "backendUrl": "ignored", "authkey": "ignored"}}
    async with client.post(f"{MGMT}/createApi.http", json={"apidoc": apidoc},
                           params={"responsetype": response_type}) as resp:
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())


async def test_routes_are_created_listed_called_and_deleted(
    client: aiohttp.ClientSession, anonymous: aiohttp.ClientSession, docker_cluster: Cluster
) -> None:
    action, base = f"books-{uuid.uuid4().hex[:6]}", f"/shop{uuid.uuid4().hex[:6]}"
    await _web_action(client, action)
    created = await _create(client, base, "/books/{id}", "GET", action)
    assert created["gwApiUrl"] == f"{docker_cluster.api_host}/api/guest{base}"
    await _create(client, base, "/books/{id}", "POST", action, "http")
    await _create(client, base, "/books/{id}/title", "GET", action, "text")

    async with client.get(f"{MGMT}/getApi.http", params={"basepath": base}) as resp:
        listed = await resp.json()
    [entry] = listed["apis"]
    apidoc = entry["value"]["apidoc"]
    assert apidoc["basePath"] == base and apidoc["swagger"] == "2.0"
    assert set(apidoc["paths"]) == {"/books/{id}", "/books/{id}/title"}
    assert set(apidoc["paths"]["/books/{id}"]) == {"get", "post"}
    assert apidoc["paths"]["/books/{id}"]["get"]["x-openwhisk"]["action"] == action

    # Anyone may call a route, as a web action; path parameters join the arguments.
    async with anonymous.get(f"/api/guest{base}/books/42", params={"q": "x"}) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        result = await resp.json()
    assert result["body"] == {"id": "42", "q": "x", "method": "get"}  # json: the whole result
    async with anonymous.post(f"/api/guest{base}/books/7") as resp:  # http: the action's answer
        assert resp.status == 200 and resp.headers["X-Book"] == "7"
        assert (await resp.json())["method"] == "post"
    async with anonymous.get(f"/api/guest{base}/books/7/title") as resp:
        assert await resp.text() == "book 7"
    for method, path in (("PUT", "/books/7"), ("GET", "/books"), ("GET", "/other/7")):
        async with anonymous.request(method, f"/api/guest{base}{path}") as resp:
            assert resp.status == 404, (method, path)

    # Deleting one operation leaves the rest; deleting the base path removes the API.
    async with client.delete(f"{MGMT}/deleteApi.http", params={
            "basepath": base, "relpath": "/books/{id}", "operation": "POST"}) as resp:
        assert resp.status == 200, await resp.text()
    async with anonymous.post(f"/api/guest{base}/books/7") as resp:
        assert resp.status == 404
    async with client.delete(f"{MGMT}/deleteApi.http", params={"basepath": base}) as resp:
        assert resp.status == 200
    async with client.get(f"{MGMT}/getApi.http", params={"basepath": base}) as resp:
        assert (await resp.json())["apis"] == []
    async with anonymous.get(f"/api/guest{base}/books/42") as resp:
        assert resp.status == 404


async def test_route_management_errors(
    client: aiohttp.ClientSession, anonymous: aiohttp.ClientSession
) -> None:
    async with anonymous.get(f"{MGMT}/getApi.http") as resp:
        assert resp.status == 401
    bad = {"apidoc": {"gatewayBasePath": "/b", "gatewayPath": "/p", "gatewayMethod": "FETCH",
                      "action": {"name": "a"}}}
    async with client.post(f"{MGMT}/createApi.http", json=bad) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"].startswith("The operation must be one of GET")
    for swagger, error in (("{", "not valid JSON"), ("{}", "needs a 'paths' object"),
                           ('{"paths": {"/p": {"get": {}}}}', "needs an 'x-openwhisk'")):
        async with client.post(f"{MGMT}/createApi.http",
                               json={"apidoc": {"swagger": swagger}}) as resp:
            assert resp.status == 400 and error in (await resp.json())["error"]
    async with client.delete(f"{MGMT}/deleteApi.http",
                             params={"basepath": f"/none{uuid.uuid4().hex[:6]}"}) as resp:
        assert resp.status == 404
    async with client.get(f"{MGMT}/nothing.http") as resp:
        assert resp.status == 404


async def test_ft_api_round_trips_a_route_that_answers_over_http(
    client: aiohttp.ClientSession, anonymous: aiohttp.ClientSession, docker_cluster: Cluster,
    tmp_path: Path,
) -> None:
    env = {**os.environ, "WSK_CONFIG_FILE": str(tmp_path / "wskprops")}

    async def ft(*args: str) -> str:
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "cli.main", *args], env=env,
            cwd=REPO_ROOT, capture_output=True, text=True,
            timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    await ft("property", "set", "--apihost", docker_cluster.api_host,
             "--auth", docker_cluster.auth)
    action, base = f"books-{uuid.uuid4().hex[:6]}", f"/lib{uuid.uuid4().hex[:6]}"
    await _web_action(client, action)
    created = await ft("api", "create", base, "/books/{id}", "get", action,
                       "--response-type", "text", "--apiname", "library")
    url = created.splitlines()[1]
    assert created.splitlines()[0] == (
        f"ok: created API {base}/books/{{id}} GET for action /_/{action}")  # as wsk says it
    assert url == f"{docker_cluster.api_host}/api/guest{base}/books/{{id}}"
    async with anonymous.get(url.replace("{id}", "9")) as resp:
        assert resp.status == 200 and await resp.text() == "book 9"
    listed = await ft("api", "list", base)
    assert f"/guest/{action}" in listed and "library" in listed and " get " in listed
    swagger = json.loads(await ft("api", "get", base))
    assert swagger["basePath"] == base and "/books/{id}" in swagger["paths"]
    assert (await ft("api", "delete", base)).strip() == f"ok: deleted API {base}"
    async with anonymous.get(url.replace("{id}", "9")) as resp:
        assert resp.status == 404
    # What `ft api get` printed creates the same API again (wsk api create --config-file).
    (tmp_path / "library.json").write_text(json.dumps(swagger))
    again = await ft("api", "create", "--config-file", str(tmp_path / "library.json"))
    assert again.splitlines() == [
        f"ok: created API {base}/books/{{id}} GET for action /guest/{action}", url]
    async with anonymous.get(url.replace("{id}", "10")) as resp:
        assert resp.status == 200 and await resp.text() == "book 10"
    await ft("api", "delete", base)
