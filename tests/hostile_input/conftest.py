"""What the hostile-input tests share: a namespace and key of their own on the session cluster
(so nothing they create or delete touches other tests' entities), raw HTTP over a socket for
requests no client library would send, and a tally of answers per category that is printed as
``<category>: tries=... rejected_4xx=... 5xx=...`` at the end of the run."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from bus.models import NamespaceAuth, NamespaceLimits
from bus.store import Store
from tests.cluster_fixtures import Cluster

# Throttles of the hostile namespace: generated invokes and fires must not flood the cluster.
HOSTILE_LIMITS = NamespaceLimits(
    invocationsPerMinute=120, concurrentInvocations=8, firesPerMinute=120)


@dataclass(frozen=True)
class Tenant:
    """A namespace with its key."""

    namespace: str
    uuid: str
    key: str

    @property
    def auth_header(self) -> dict[str, str]:
        return {"Authorization": aiohttp.encode_basic_auth(self.uuid, self.key)}


@pytest.fixture(scope="session")
async def tenant(cluster: Cluster) -> AsyncIterator[Tenant]:
    store = Store.from_url(cluster.settings.redis_url)
    auth = NamespaceAuth(uuid=str(uuid.uuid4()), key=secrets.token_hex(32),
                         namespace=f"hostile-{uuid.uuid4().hex[:8]}")
    await store.put_auth(auth)
    await store.set_limits(auth.namespace, HOSTILE_LIMITS)
    try:
        yield Tenant(auth.namespace, auth.uuid, auth.key)
    finally:
        await store.close()


@pytest.fixture
async def api(cluster: Cluster, tenant: Tenant) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the cluster's gateway as the hostile tenant."""
    async with aiohttp.ClientSession(base_url=cluster.api_host,
                                     headers=tenant.auth_header) as session:
        yield session


# -- answers ---------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


async def raw_request(host: str, port: int, data: bytes, *, timeout: float = 30) -> Reply:
    """Send ``data`` as it is on a fresh connection; the answer read until the server closes
    (every request sent this way says ``Connection: close`` or is refused)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    return parse_reply(raw)


def parse_reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(status, headers, body)


def host_port(api_host: str) -> tuple[str, int]:
    hostport = api_host.split("://", 1)[1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    return host, int(port)


# -- the tally -------------------------------------------------------------------------------


@dataclass
class Tally:
    """Answers of one category of hostile requests."""

    statuses: Counter[int] = field(default_factory=Counter)

    def add(self, status: int) -> None:
        self.statuses[status] += 1

    @property
    def tries(self) -> int:
        return sum(self.statuses.values())

    @property
    def rejected_4xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if 400 <= status < 500)

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def line(self, category: str) -> str:
        return (f"{category}: tries={self.tries} rejected_4xx={self.rejected_4xx} "
                f"5xx={self.server_errors}")


TALLIES: dict[str, Tally] = {}


def tally(category: str) -> Tally:
    return TALLIES.setdefault(category, Tally())


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLIES:
        terminalreporter.section("hostile input")
        for category, counts in TALLIES.items():
            terminalreporter.write_line(counts.line(category))
