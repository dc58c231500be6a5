"""A flood of 2,000 bad requests of every kind against the session cluster's gateway (large
rejected bodies included): none is a 5xx, and the gateway process's resident memory stays
bounded (read from /proc; the bound is generous, no timing is asserted)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.cluster_fixtures import Cluster
from tests.hostile_input.conftest import host_port, raw_request, tally

MB = 1024 * 1024
CONCURRENCY = 16
ECHO_CODE = "def main(args):\n    return args\n"
JSON = {"Content-Type": "application/json"}


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


async def _chunked(size: int) -> AsyncIterator[bytes]:
    sent = 0
    chunk = b'{"x":"' + b"a" * (64 * 1024)
    while sent < size:
        yield chunk
        sent += len(chunk)
    yield b'"}'


Attack = Callable[[aiohttp.ClientSession, Cluster], Awaitable[int]]


async def _status(reply_context: Any) -> int:
    """The status of a request made with ``async with``, its body read."""
    async with reply_context as reply:
        await reply.read()
        return reply.status


def _attacks(echo: str) -> list[tuple[int, Attack]]:
    """(how many, attack): 2,000 requests in all."""
    invoke = f"/api/v1/namespaces/_/actions/{echo}"
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    oversized = b'{"x":"' + b"a" * (2 * MB) + b'"}'

    async def header_flood(http: aiohttp.ClientSession, cluster: Cluster) -> int:
        host, port = host_port(cluster.api_host)
        headers = b"".join(b"X-F%d: v\r\n" % i for i in range(500))
        raw = (b"GET /api/v1 HTTP/1.1\r\nHost: h\r\n" + headers +
               b"Connection: close\r\n\r\n")
        return (await raw_request(host, port, raw)).status

    return [
        (400, lambda http, _: _status(http.get("/api/v1/namespaces/_/actions/bad$name"))),
        (300, lambda http, _: _status(http.post(invoke, data=deep, headers=JSON))),
        (200, lambda http, _: _status(http.post(invoke, data=oversized, headers=JSON))),
        (100, lambda http, _: _status(http.post(invoke, data=_chunked(int(1.5 * MB)),
                                                headers=JSON))),
        (300, lambda http, _: _status(http.post(invoke, data=b'{"k":"\xff\xfe"}',
                                                headers=JSON))),
        (300, lambda http, _: _status(http.put("/api/v1/namespaces/_/triggers/t",
                                               data=b"{}", headers={"Content-Type": "text/x"}))),
        (200, lambda http, _: _status(http.get("/api/v1/namespaces/_/activations?limit=-1"))),
        (200, header_flood),
    ]


async def test_gateway_memory_stays_bounded_under_a_flood(
    cluster: Cluster, api: aiohttp.ClientSession
) -> None:
    echo = "hostile-flood-echo"
    async with api.put(f"/api/v1/namespaces/_/actions/{echo}?overwrite=true",
                       json={"exec": {"kind": "python:3.11", "code": ECHO_CODE}}) as reply:
        assert reply.status == 200
    pid = cluster.processes.procs["gateway"].pid
    before = rss_bytes(pid)
    attacks = [attack for count, attack in _attacks(echo) for _ in range(count)]
    assert len(attacks) == 2000
    counts = tally("flood")
    queue = iter(attacks)

    async def worker() -> None:
        for attack in queue:  # shared iterator: each attack is taken by one worker
            counts.add(await attack(api, cluster))

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    after = rss_bytes(pid)
    print(f"gateway RSS before {before / MB:.1f} MB, after 2,000 bad requests "
          f"{after / MB:.1f} MB")
    print(counts.line("flood"))
    assert counts.tries == 2000
    assert counts.server_errors == 0
    assert counts.rejected_4xx == 2000
    assert after < 2 * before + 50 * MB
    # And it still serves.
    async with api.get("/api/v1/namespaces/_/actions?limit=1") as reply:
        assert reply.status == 200

