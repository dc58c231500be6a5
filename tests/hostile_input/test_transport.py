"""Hostile HTTP below the API: header floods and huge header values (aiohttp's parser limits:
400, the gateway lives on), bytes that are not UTF-8 in the request line and in header values
(which must still reach actions encodable), and slow senders (slowloris), which a gateway
started here with a 2-second read timeout cuts off."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bus.config import Settings
from cli.cluster import free_port
from gateway.app import serve
from tests.cluster_fixtures import Cluster
from tests.hostile_input.conftest import Tenant, host_port, parse_reply, raw_request, tally

ECHO_CODE = "def main(args):\n    return args\n"


def _request(host: str, path: str, headers: list[bytes], body: bytes = b"",
             method: bytes = b"GET") -> bytes:
    head = b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path.encode(), host.encode())
    return head + b"".join(h + b"\r\n" for h in headers) + b"Connection: close\r\n\r\n" + body


async def _answer(cluster: Cluster, raw: bytes, category: str) -> tuple[int, bytes]:
    host, port = host_port(cluster.api_host)
    reply = await raw_request(host, port, raw)
    tally(category).add(reply.status)
    return reply.status, reply.body


async def test_header_floods_are_400_and_the_gateway_lives_on(cluster: Cluster) -> None:
    host, _ = host_port(cluster.api_host)
    thousands = [b"X-Flood-%d: v" % i for i in range(5000)]
    status, body = await _answer(cluster, _request(host, "/api/v1", thousands), "header floods")
    assert (status, body) == (400, b"Too many headers received")
    huge_value = [b"X-Huge: " + b"v" * 100_000]
    status, body = await _answer(cluster, _request(host, "/api/v1", huge_value), "header floods")
    assert status == 400 and body.startswith(b"Got more than 8190 bytes when reading")
    huge_name = [b"X-" + b"n" * 20_000 + b": v"]
    status, body = await _answer(cluster, _request(host, "/api/v1", huge_name), "header floods")
    assert status == 400 and body.startswith(b"Got more than 8190 bytes when reading")
    long_url = "/api/v1/namespaces/_/actions/" + "a" * 20_000
    status, body = await _answer(cluster, _request(host, long_url, []), "header floods")
    assert status == 400 and body.startswith(b"Got more than 8190 bytes when reading")
    # Just under every limit is served: 100 headers of 8000 bytes each.
    near = [b"X-Near-%d: " % i + b"v" * 8000 for i in range(100)]
    status, body = await _answer(cluster, _request(host, "/api/v1", near), "header floods")
    assert status == 200 and b'"api_version":"1.0.0"' in body


async def test_bytes_that_are_not_utf8_in_the_request_line(cluster: Cluster) -> None:
    host, _ = host_port(cluster.api_host)
    for target in (b"/api/v1/namespaces/_/actions/\xff\xfe", b"/api/v1?x=\xff"):
        raw = b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (
            target, host.encode())
        status, body = await _answer(cluster, raw, "bytes in request line and headers")
        assert status == 400 and body.startswith(b"Invalid char in url"), body


async def test_bytes_that_are_not_utf8_in_credentials(cluster: Cluster) -> None:
    host, _ = host_port(cluster.api_host)
    for credentials in (b"Basic \xff\xfe", b"Basic " + "é".encode() * 4, b"Basic Zm9v"):
        raw = _request(host, "/api/v1/namespaces/_/actions", [b"Authorization: " + credentials])
        status, body = await _answer(cluster, raw, "bytes in request line and headers")
        assert status == 401
        assert json.loads(body)["error"] == "The supplied authentication is invalid"


@pytest.fixture
async def web_echo(api: aiohttp.ClientSession) -> AsyncIterator[str]:
    name = "hostile-web-echo"
    body = {"exec": {"kind": "python:3.11", "code": ECHO_CODE},
            "annotations": [{"key": "web-export", "value": True}]}
    async with api.put(f"/api/v1/namespaces/_/actions/{name}?overwrite=true",
                       json=body) as reply:
        assert reply.status == 200, await reply.text()
    yield name


async def test_header_values_that_are_not_utf8_reach_actions_encodable(
    cluster: Cluster, tenant: Tenant, api: aiohttp.ClientSession, web_echo: str
) -> None:
    host, _ = host_port(cluster.api_host)
    path = f"/api/v1/web/{tenant.namespace}/default/{web_echo}.json"
    raw = _request(host, path, [b"X-Bytes: ok \xff\xfe end", b"X-Fine: caf\xc3\xa9"])
    status, body = await _answer(cluster, raw, "bytes in request line and headers")
    assert status == 200, body
    headers = json.loads(body)["__ow_headers"]
    assert headers["x-bytes"] == "ok \ufffd\ufffd end"
    assert headers["x-fine"] == "café"
    # A fire forwards the headers to its rules' actions the same way (it was a 503 when the
    # message could not be encoded).
    async with api.put("/api/v1/namespaces/_/triggers/hostile-bytes?overwrite=true",
                       json={}) as reply:
        assert reply.status == 200
    async with api.put("/api/v1/namespaces/_/rules/hostile-bytes-rule?overwrite=true",
                       json={"trigger": "hostile-bytes", "action": web_echo}) as reply:
        assert reply.status == 200, await reply.text()
    raw = _request(host, "/api/v1/namespaces/_/triggers/hostile-bytes",
                   [b"Authorization: " + tenant.auth_header["Authorization"].encode(),
                    b"X-Bytes: \xff"], method=b"POST")
    status, body = await _answer(cluster, raw, "bytes in request line and headers")
    assert status == 202, body


# -- slow senders -----------------------------------------------------------------------------

READ_TIMEOUT_S = 2.0
GIVE_UP_S = 30.0  # far past the timeout: only reached if the gateway never cuts us off


@pytest.fixture
async def short_timeout_gateway(settings: Settings) -> AsyncIterator[tuple[str, int]]:
    """A second gateway of the session cluster (``serve``, as ``ft gateway`` runs it) whose
    read timeout is 2 s."""
    port = free_port()
    stop = asyncio.Event()
    own = settings.model_copy(update={"gateway_port": port,
                                      "gateway_read_timeout_s": READ_TIMEOUT_S})
    task = asyncio.create_task(serve(own, stop=stop))
    for _ in range(200):
        try:
            async with aiohttp.ClientSession() as http, \
                    http.get(f"http://127.0.0.1:{port}/api/v1") as reply:
                if reply.status == 200:
                    break
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.1)
    yield "127.0.0.1", port
    stop.set()
    await task


def _complete(received: bytes) -> bool:
    """A whole answer arrived (its headers and Content-Length bytes of body)."""
    head, sep, body = received.partition(b"\r\n\r\n")
    if not sep:
        return False
    return len(body) >= int(parse_reply(head + sep).headers.get("content-length", "0"))


async def _until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        trickle: bytes) -> bytes:
    """Send ``trickle`` every 0.2 s until the server answers or closes the connection; what
    it sent. (After an answer aiohttp goes on reading the unfinished body for a while before
    it closes: the answer is what counts.)"""
    received = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GIVE_UP_S
    while loop.time() < deadline:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), 0.2)
        except TimeoutError:
            if trickle:
                writer.write(trickle)
            continue
        except ConnectionError:
            return received
        if not chunk:
            return received
        received += chunk
        if _complete(received):
            return received
    raise AssertionError(f"the gateway kept a slow sender for {GIVE_UP_S} s")


async def test_slow_headers_are_cut_off(short_timeout_gateway: tuple[str, int]) -> None:
    host, port = short_timeout_gateway
    for opening in (b"", b"GET /api/v1 HTTP/1.1\r\nHost: x\r\n"):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(opening)
        received = await _until_closed(reader, writer, b"X-Slow: 1\r\n" if opening else b"")
        writer.close()
        tally("slowloris").add(408)  # cut off: counted as refused
        assert received == b""  # closed without an answer: no complete request was made


async def test_slow_bodies_are_408(short_timeout_gateway: tuple[str, int],
                                   tenant: Tenant) -> None:
    host, port = short_timeout_gateway
    head = (f"POST /api/v1/namespaces/_/triggers/slow HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: {tenant.auth_header['Authorization']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{").encode()
    for trickle in (b"", b" "):  # stalled, and one byte at a time
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(head)
        received = await _until_closed(reader, writer, trickle)
        writer.close()
        reply = parse_reply(received)
        tally("slowloris").add(reply.status)
        assert reply.status == 408
        assert reply.json()["error"] == "The request body was not received within 2 seconds."
