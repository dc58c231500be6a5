"""Secrets on a real cluster: an action annotated ``provide-api-key`` gets a key minted for its
activation (invoked directly, or fired by a rule, where nobody's key was at hand), which works
against the gateway while the activation runs and stops working when it ends; neither that key
nor init parameters ever show up in records, logs, lists or errors.

Containers have no network, so the test reads the key from inside the running container
(``docker exec``, read-only) and uses it itself; the action holds on until told to finish."""

from __future__ import annotations

import asyncio
import json
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from bus.config import Settings
from bus.store import Store
from tests.cluster_fixtures import Cluster
from tests.tenants.conftest import Client, new_client

HOLDING_ACTION = """\
import os, time

def main(args):
    activation = os.environ["__OW_ACTIVATION_ID"]
    key = os.environ.get("__OW_API_KEY", "")
    # Handed to the test through the container's own /tmp, never through the result.
    with open(f"/tmp/key-{activation}", "w") as f:
        f.write(key)
    deadline = time.time() + 60
    while time.time() < deadline and not os.path.exists(f"/tmp/release-{activation}"):
        time.sleep(0.05)
    return {"had_key": bool(key),
            "init_secret_in_env": os.environ.get("INIT_SECRET", "").startswith("init-"),
            "argument_names": sorted(args)}
"""
LOGGING_FAILURE = """\
import os

def main(args):
    print("running with", sorted(args))
    raise ValueError("failed on purpose")
"""


@dataclass
class Tenant:
    client: Client
    init_secret: str


@pytest.fixture(scope="module")
async def tenant(cluster: Cluster, settings: Settings) -> AsyncIterator[Tenant]:
    store = Store.from_url(settings.redis_url)
    client = await new_client(cluster, store, f"secrets-{uuid.uuid4().hex[:8]}")
    init_secret = f"init-{secrets.token_hex(12)}"
    params = [{"key": "INIT_SECRET", "value": init_secret, "init": True}]
    ns = "/api/v1/namespaces/_"
    try:
        await client.ok("PUT", f"{ns}/actions/keyed", json_body={
            "exec": {"kind": "python:3.11", "code": HOLDING_ACTION},
            "parameters": params, "limits": {"timeout": 90_000},
            "annotations": [{"key": "provide-api-key", "value": True}]})
        await client.ok("PUT", f"{ns}/actions/failing", json_body={
            "exec": {"kind": "python:3.11", "code": LOGGING_FAILURE}, "parameters": params})
        yield Tenant(client, init_secret)
    finally:
        await client.http.close()
        await store.close()


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=30,
                          check=False)


def _read_in_containers(invoker_ids: list[str], path: str) -> tuple[str, str] | None:
    """(container, content) of the first of the cluster's containers holding ``path``."""
    for invoker_id in invoker_ids:
        listed = _docker("ps", "-q", "--filter", f"label=funtainer.invoker={invoker_id}")
        for container in listed.stdout.split():
            read = _docker("exec", container, "cat", path)
            if read.returncode == 0:
                return container, read.stdout
    return None


async def _key_of_running(cluster: Cluster, activation_id: str) -> tuple[str, str]:
    for _ in range(600):
        found = await asyncio.to_thread(
            _read_in_containers, cluster.invoker_ids, f"/tmp/key-{activation_id}")
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"activation {activation_id} never started")


async def _status_with(base_url: str, credential: str) -> int:
    user, key = credential.split(":", 1)
    async with aiohttp.ClientSession(base_url=base_url) as http:
        headers = {"Authorization": aiohttp.encode_basic_auth(user, key)}
        async with http.get("/api/v1/namespaces/_/actions", headers=headers) as response:
            return response.status


async def _record(client: Client, activation_id: str) -> dict:
    for _ in range(900):
        reply = await client.call("GET", f"/api/v1/namespaces/_/activations/{activation_id}")
        if reply.status == 200:
            return reply.body
        await asyncio.sleep(0.1)
    raise AssertionError(f"no record for {activation_id}")


async def _check_minted_key(cluster: Cluster, tenant: Tenant, activation_id: str,
                            settings: Settings) -> None:
    client = tenant.client
    container, minted = await _key_of_running(cluster, activation_id)
    user, secret = minted.split(":", 1)
    assert len(secret) == 64 and user != client.uuid and secret != client.key
    # While the activation runs, the key is the namespace's.
    assert await _status_with(cluster.api_host, minted) == 200
    store = Store.from_url(settings.redis_url)
    try:
        stored = await store.keys.get(user)
        assert stored is not None and stored.activation == activation_id
        assert user not in [k.uuid for k in await store.keys.list(client.namespace)]
        release = await asyncio.to_thread(
            _docker, "exec", container, "touch", f"/tmp/release-{activation_id}")
        assert release.returncode == 0, release.stderr
        record = await _record(client, activation_id)
        assert record["response"]["result"]["had_key"] is True
        # Revoked when the run ended: gone from Redis, refused by the gateway (its cache is
        # told at once; the bound is its TTL, far below the key's own 190 s).
        assert await store.keys.get(user) is None
    finally:
        await store.close()
    deadline = asyncio.get_running_loop().time() + settings.auth_cache_ttl_s + 2
    while await _status_with(cluster.api_host, minted) != 401:
        assert asyncio.get_running_loop().time() < deadline, "minted key still accepted"
        await asyncio.sleep(0.1)
    for shown in (json.dumps(record), (await client.call(
            "GET", "/api/v1/namespaces/_/activations", params={"docs": "true"})).text):
        assert secret not in shown and user not in shown and client.key not in shown
        assert tenant.init_secret not in shown


async def test_invoked_action_gets_an_activation_scoped_key(
    cluster: Cluster, tenant: Tenant, settings: Settings
) -> None:
    reply = await tenant.client.ok("POST", "/api/v1/namespaces/_/actions/keyed",
                                   json_body={"visible": 1})
    await _check_minted_key(cluster, tenant, reply["activationId"], settings)
    record = await _record(tenant.client, reply["activationId"])
    result = record["response"]["result"]
    # Init parameters reach the environment, never the arguments.
    assert result["init_secret_in_env"] is True and result["argument_names"] == ["visible"]


async def test_rule_fired_action_gets_a_working_key_too(
    cluster: Cluster, tenant: Tenant, settings: Settings
) -> None:
    client = tenant.client
    ns = "/api/v1/namespaces/_"
    await client.ok("PUT", f"{ns}/triggers/keyed-trigger", json_body={})
    await client.ok("PUT", f"{ns}/rules/keyed-rule",
                    json_body={"trigger": "/_/keyed-trigger", "action": "/_/keyed"})
    fired = await client.ok("POST", f"{ns}/triggers/keyed-trigger", json_body={"n": 1})
    trigger_record = await _record(client, fired["activationId"])
    caused = json.loads(trigger_record["logs"][0])["activationId"]
    await _check_minted_key(cluster, tenant, caused, settings)


async def test_init_parameters_stay_out_of_records_logs_lists_and_errors(
    tenant: Tenant,
) -> None:
    client = tenant.client
    ns = "/api/v1/namespaces/_"
    reply = await client.call("POST", f"{ns}/actions/failing", params={"blocking": "true"},
                              json_body={"given": True})
    assert reply.status == 502 and reply.body["response"]["result"] == {
        "error": "failed on purpose"}
    record = await _record(client, reply.body["activationId"])
    assert any("running with ['given']" in line for line in record["logs"])
    shown = [reply.text, json.dumps(record)]
    for path in ("activations", "actions"):
        shown.append((await client.call("GET", f"{ns}/{path}", params={"docs": "true"})).text)
    shown.append((await client.call(
        "GET", f"{ns}/activations/{reply.body['activationId']}/logs")).text)
    assert all(tenant.init_secret not in text for text in shown)
    # The owner reads its own action's parameters back, as in OpenWhisk.
    assert tenant.init_secret in (await client.call("GET", f"{ns}/actions/failing")).text
