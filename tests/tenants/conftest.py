"""Two tenants on the end-to-end cluster: B owns an action (with an init secret), a private and
a public package (each with an action), a trigger, a rule and activations; A owns an action and
a trigger of its own, to reference in rules. Every namespace and key is fresh, made the way
``ft admin`` makes them (hashed in Redis)."""

from __future__ import annotations

import asyncio
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from bus.config import Settings
from bus.store import Store
from tests.cluster_fixtures import Cluster

CODE = 'def main(args):\n    return {"ok": True}\n'
EXEC = {"kind": "python:3.11", "code": CODE}


@dataclass
class Reply:
    status: int
    body: Any
    text: str


@dataclass
class Client:
    http: aiohttp.ClientSession
    namespace: str
    uuid: str
    key: str

    async def call(self, method: str, path: str, *, json_body: Any = None,
                   params: dict[str, str] | None = None) -> Reply:
        async with self.http.request(method, path, json=json_body, params=params) as response:
            text = await response.text()
            try:
                body = json.loads(text) if text else None
            except ValueError:
                body = None
            return Reply(response.status, body, text)

    async def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = await self.call(method, path, **kwargs)
        assert reply.status in (200, 202), (method, path, reply.status, reply.text)
        return reply.body


async def new_client(cluster: Cluster, store: Store, namespace: str) -> Client:
    _, credential = await store.keys.create(namespace)
    user, key = credential.split(":", 1)
    http = aiohttp.ClientSession(
        base_url=cluster.api_host,
        headers={"Authorization": aiohttp.encode_basic_auth(user, key)})
    return Client(http, namespace, user, key)


@dataclass
class World:
    a: Client
    b: Client
    b_secret: str
    b_activations: list[str] = field(default_factory=list)

    @property
    def b_identifiers(self) -> list[str]:
        """Strings that must never show up in what A is answered (B's public package aside)."""
        return [self.b.namespace, self.b_secret, *self.b_activations]


async def _wait_for_record(client: Client, activation_id: str) -> None:
    for _ in range(300):
        reply = await client.call("GET", f"/api/v1/namespaces/_/activations/{activation_id}")
        if reply.status == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no record for {activation_id}")


async def _populate_b(b: Client, secret: str) -> list[str]:
    ns = "/api/v1/namespaces/_"
    init_secret = [{"key": "B_SECRET", "value": secret, "init": True}]
    await b.ok("PUT", f"{ns}/actions/b-act", json_body={"exec": EXEC, "parameters": init_secret})
    await b.ok("PUT", f"{ns}/packages/b-priv", json_body={})
    await b.ok("PUT", f"{ns}/actions/b-priv/inner", json_body={"exec": EXEC})
    await b.ok("PUT", f"{ns}/packages/b-pub", json_body={"publish": True})
    await b.ok("PUT", f"{ns}/actions/b-pub/pubact",
               json_body={"exec": EXEC, "parameters": init_secret})
    await b.ok("PUT", f"{ns}/triggers/b-trig", json_body={})
    # An API route to b-act (not a web action, so calling the route finds nothing to run).
    await b.ok("POST", "/api/v1/web/whisk.system/apimgmt/createApi.http", json_body={
        "apidoc": {"namespace": "_", "gatewayBasePath": "/b-api", "gatewayPath": "/x",
                   "gatewayMethod": "GET", "action": {"name": "b-act", "namespace": "_"}}})
    await b.ok("PUT", f"{ns}/rules/b-rule",
               json_body={"trigger": "/_/b-trig", "action": "/_/b-act"})
    invoked = await b.ok("POST", f"{ns}/actions/b-act", params={"blocking": "true"})
    fired = await b.ok("POST", f"{ns}/triggers/b-trig", json_body={"x": 1})
    ids = [invoked["activationId"], fired["activationId"]]
    for activation_id in ids:
        await _wait_for_record(b, activation_id)
    return ids


@pytest.fixture(scope="module")
async def world(cluster: Cluster, settings: Settings) -> AsyncIterator[World]:
    store = Store.from_url(settings.redis_url)
    tag = uuid.uuid4().hex[:8]
    a = await new_client(cluster, store, f"tenant-a-{tag}")
    b = await new_client(cluster, store, f"tenant-b-{tag}")
    try:
        secret = f"b-secret-{secrets.token_hex(12)}"
        activations = await _populate_b(b, secret)
        await a.ok("PUT", "/api/v1/namespaces/_/actions/a-act", json_body={"exec": EXEC})
        await a.ok("PUT", "/api/v1/namespaces/_/triggers/a-trig", json_body={})
        yield World(a, b, secret, activations)
    finally:
        await a.http.close()
        await b.http.close()
        await store.close()
