"""Keys: hashed at rest, managed with ``ft admin`` (create, add, list, rotate with a grace
period, revoke), dropped from gateway caches by revocation, and failed authentications
rate-limited per client address and per uuid while correct keys keep working.

The rate-limit tests run a gateway of their own on ``::1`` with low limits, so their failures
are counted against an address the session's cluster (on 127.0.0.1) never uses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bus.broker import Broker
from bus.codec import pack
from bus.config import Settings
from bus.keys import KEY_LENGTH
from bus.models import NamespaceAuth
from bus.store import Store
from gateway.app import build_app
from gateway.state import AUTHENTICATOR
from tests.cluster_fixtures import Cluster

WHOAMI = "/api/v1/namespaces"
PER_ADDRESS = 5
PER_UUID = 3


async def _status(base_url: str, credential: str) -> int:
    user, key = credential.split(":", 1)
    auth = {"Authorization": aiohttp.encode_basic_auth(user, key)}
    async with aiohttp.ClientSession(base_url=base_url) as http:
        async with http.get(WHOAMI, headers=auth) as response:
            return response.status


async def _until_status(base_url: str, credential: str, wanted: int, within_s: float) -> None:
    """Poll until the gateway answers ``wanted``; fail if it never does within the bound."""
    deadline = asyncio.get_running_loop().time() + within_s
    while (status := await _status(base_url, credential)) != wanted:
        assert asyncio.get_running_loop().time() < deadline, f"still {status}, not {wanted}"
        await asyncio.sleep(0.1)


def _ft_admin(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FT_REDIS_URL": settings.redis_url}
    env.pop("FT_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "cli.main", "admin", *args], env=env,
                          capture_output=True, text=True, timeout=30, check=False)


async def admin(settings: Settings, *args: str) -> str:
    done = await asyncio.to_thread(_ft_admin, settings, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_keys_are_stored_hashed_and_legacy_ones_upgraded(store: Store) -> None:
    ns = f"hash-{uuid.uuid4().hex[:8]}"
    stored, credential = await store.keys.create(ns)
    user, secret = credential.split(":", 1)
    assert len(secret) == KEY_LENGTH
    raw = await store.redis.get(f"ft:auth:{user}")
    assert secret.encode() not in raw and stored.digest.encode() in raw
    assert await store.authenticate(user, secret) == ns
    assert await store.authenticate(user, secret[:-1] + ("x" if secret[-1] != "x" else "y")) is None

    # A key written in clear by an earlier version still works, and is hashed once read.
    legacy = NamespaceAuth(uuid=str(uuid.uuid4()), key="L" * KEY_LENGTH, namespace=ns)
    await store.redis.set(f"ft:auth:{legacy.uuid}", pack(legacy))
    assert await store.authenticate(legacy.uuid, legacy.key) == ns
    assert legacy.key.encode() not in await store.redis.get(f"ft:auth:{legacy.uuid}")
    # ... or when a gateway starts, which also lists it under its namespace for ft admin.
    unread = NamespaceAuth(uuid=str(uuid.uuid4()), key="U" * KEY_LENGTH, namespace=ns)
    await store.redis.set(f"ft:auth:{unread.uuid}", pack(unread))
    assert await store.keys.upgrade_legacy() >= 1
    assert unread.key.encode() not in await store.redis.get(f"ft:auth:{unread.uuid}")
    assert unread.uuid in [k.uuid for k in await store.keys.list(ns)]
    assert await store.authenticate(unread.uuid, unread.key) == ns


async def test_minted_keys_expire_and_are_not_listed(store: Store) -> None:
    ns = f"mint-{uuid.uuid4().hex[:8]}"
    await store.keys.create(ns)
    key_uuid, credential = await store.keys.mint(ns, "a" * 32, ttl_ms=300)
    assert await store.authenticate(*credential.split(":", 1)) == ns
    assert key_uuid not in [k.uuid for k in await store.keys.list(ns)]
    await asyncio.sleep(0.4)
    assert await store.authenticate(*credential.split(":", 1)) is None


async def test_admin_key_lifecycle(cluster: Cluster, settings: Settings) -> None:
    base = cluster.api_host
    ns = f"life-{uuid.uuid4().hex[:8]}"
    first = (await admin(settings, "user", "create", ns)).strip()
    second = (await admin(settings, "key", "add", ns)).strip()
    assert await _status(base, first) == 200 and await _status(base, second) == 200
    listed = await admin(settings, "key", "list", ns)
    assert sorted(line.split()[0] for line in listed.splitlines()) == sorted(
        [first.split(":")[0], second.split(":")[0]])
    assert first.split(":")[1] not in listed and second.split(":")[1] not in listed

    ttl = cluster.settings.auth_cache_ttl_s
    # Rotation with a grace period: both keys work meanwhile, the old one listed with its end.
    rotated = (await admin(settings, "key", "rotate", first.split(":")[0], "--grace", "600"))
    rotated = rotated.strip()
    assert await _status(base, rotated) == 200 and await _status(base, first) == 200
    expiring = [line for line in (await admin(settings, "key", "list", ns)).splitlines()
                if line.startswith(first.split(":")[0])]
    assert len(expiring) == 1 and "expires never" not in expiring[0]
    # After a short grace only the new key works.
    newer = (await admin(settings, "key", "rotate", rotated.split(":")[0], "--grace", "1"))
    newer = newer.strip()
    await _until_status(base, rotated, 401, within_s=1 + ttl + 5)
    assert await _status(base, newer) == 200

    # Revocation: refused at once (the gateway's cache hears of it), within the cache TTL at
    # the very latest; a key in its grace period can be revoked early too.
    for revoked in (second, first):
        await admin(settings, "key", "revoke", revoked.split(":")[0])
        await _until_status(base, revoked, 401, within_s=ttl + 2)
    # Rotation without grace revokes the old key at once.
    newest = (await admin(settings, "key", "rotate", newer.split(":")[0])).strip()
    await _until_status(base, newer, 401, within_s=ttl + 2)
    assert await _status(base, newest) == 200
    assert (await admin(settings, "key", "list", ns)).split()[0] == newest.split(":")[0]
    refused = await asyncio.to_thread(_ft_admin, settings, "key", "add", f"none-{ns}")
    assert refused.returncode == 1 and "does not exist" in refused.stderr


# -- a gateway of our own on ::1 -----------------------------------------------------------


@pytest.fixture
async def own_gateway(
    settings: Settings, store: Store, broker: Broker
) -> AsyncIterator[tuple[web.Application, str]]:
    """Caches keys for an hour: only revocation messages can drop one in time."""
    tuned = settings.model_copy(update={
        "auth_cache_ttl_s": 3600.0, "auth_failures_per_address": PER_ADDRESS,
        "auth_failures_per_uuid": PER_UUID})
    app = build_app(tuned, store, broker)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, "::1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield app, f"http://[::1]:{port}"
    await runner.cleanup()


async def test_revocation_reaches_a_cache_that_would_keep_the_key_an_hour(
    own_gateway: tuple[web.Application, str], store: Store
) -> None:
    _, base = own_gateway
    stored, credential = await store.keys.create(f"rev-{uuid.uuid4().hex[:8]}")
    assert await _status(base, credential) == 200  # now cached for an hour
    await store.keys.revoke(stored.uuid)
    await _until_status(base, credential, 401, within_s=5)


class _Counting:
    """Counts the calls made through a bound method (a spy: the real call still happens)."""

    def __init__(self, method: Any) -> None:
        self.method, self.calls = method, 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await self.method(*args, **kwargs)


async def test_failed_auths_limited_per_uuid_but_the_right_key_still_works(
    own_gateway: tuple[web.Application, str], store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, base = own_gateway
    stored, credential = await store.keys.create(f"rl-{uuid.uuid4().hex[:8]}")
    wrong = f"{stored.uuid}:{'w' * KEY_LENGTH}"
    statuses = []
    async with aiohttp.ClientSession(base_url=base) as http:
        for _ in range(PER_UUID + 2):
            user, key = wrong.split(":", 1)
            headers = {"Authorization": aiohttp.encode_basic_auth(user, key)}
            async with http.get(WHOAMI, headers=headers) as response:
                statuses.append(response.status)
                body = await response.json()
                retry_after = response.headers.get("Retry-After")
    # A calendar minute may end mid-way and restart the count, hence "at least once".
    assert statuses[0] == 401 and 429 in statuses
    assert set(body) == {"error", "code"} and "(count: " in body["error"]
    assert f"allowed: {PER_UUID})" in body["error"] and retry_after is not None
    assert await _status(base, credential) == 200

    # A cached correct key costs no Redis call at all.
    lookups = _Counting(store.keys.authenticate)
    monkeypatch.setattr(store.keys, "authenticate", lookups)
    for _ in range(5):
        assert await _status(base, credential) == 200
    assert lookups.calls == 0
    assert app[AUTHENTICATOR].cache.lookup(stored.uuid, credential.split(":")[1])


async def test_failed_auths_limited_per_address(
    own_gateway: tuple[web.Application, str], store: Store
) -> None:
    _, base = own_gateway
    _, credential = await store.keys.create(f"rla-{uuid.uuid4().hex[:8]}")
    statuses = []
    for _ in range(2 * (PER_ADDRESS + 1)):  # a fresh uuid each time: only the address adds up
        statuses.append(await _status(base, f"{uuid.uuid4()}:{'z' * KEY_LENGTH}"))
        if statuses[-1] == 429:
            break
    assert statuses[0] in (401, 429) and statuses[-1] == 429
    assert await _status(base, credential) == 200  # the blocked address's right key works
