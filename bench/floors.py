"""The raw floors of each hop, measured on the same machine and services as the platform:
an aio-pika request/reply round trip, a Redis GET, an aiohttp server on loopback (one
keep-alive connection, then sixteen), and a bubblewrap sandbox spawned until a Unix-socket
server inside answers. The container floors are in floors_container.py."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aio_pika
import redis.asyncio as aioredis

from bench.env import REPO, bench_env
from bench.stats import ms_since, summary, timed_loop
from cli.cluster import free_port


async def amqp_round_trip(amqp_url: str, n: int) -> dict[str, float]:
    """Publish a request, an echo consumer publishes the reply, we consume it: two one-way
    hops, the unit every activation pays more than once."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        requests = await channel.declare_queue(exclusive=True)
        replies = await channel.declare_queue(exclusive=True)
        got: asyncio.Queue[None] = asyncio.Queue()

        async def echo(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await channel.default_exchange.publish(aio_pika.Message(message.body),
                                                   replies.name, mandatory=False)

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            got.put_nowait(None)

        await requests.consume(echo, no_ack=True)
        await replies.consume(on_reply, no_ack=True)

        async def round_trip() -> None:
            await channel.default_exchange.publish(aio_pika.Message(b"x"), requests.name)
            await got.get()

        return summary(await timed_loop(round_trip, n, n // 10))
    finally:
        await connection.close()


async def redis_get(redis_url: str, n: int) -> dict[str, float]:
    # RESP2 with hiredis, as DESIGN §7 says the platform should talk to Redis.
    client = aioredis.Redis.from_url(redis_url, protocol=2)
    try:
        await client.set("ft:bench:floor", b"x" * 100)
        return summary(await timed_loop(lambda: client.get("ft:bench:floor"), n, n // 10))
    finally:
        await client.delete("ft:bench:floor")
        await client.aclose()


# -- an HTTP server on loopback -------------------------------------------------------------

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


class RawHttpConnection:
    """A keep-alive HTTP/1.1 GET client on plain asyncio streams: cheap enough that the
    measurement is the server's cost, not the client's."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> RawHttpConnection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def get(self) -> None:
        self.writer.write(REQUEST)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def _wait_listening(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            connection = await RawHttpConnection.open(port)
            connection.close()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the floor HTTP server did not start") from None
            await asyncio.sleep(0.05)


async def aiohttp_server(n: int, per_connection: int, connections: int = 16) -> dict[str, Any]:
    """Round trips on one keep-alive connection, then requests/s over ``connections``."""
    port = free_port()
    server = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-m", "bench.http_server", "--port", str(port)],
        env=bench_env(), cwd=REPO)
    try:
        await _wait_listening(port, server)
        one = await RawHttpConnection.open(port)
        try:
            latency = summary(await timed_loop(one.get, n, n // 10))
        finally:
            one.close()
        pool = [await RawHttpConnection.open(port) for _ in range(connections)]

        async def drive(connection: RawHttpConnection) -> None:
            for _ in range(per_connection):
                await connection.get()

        await asyncio.gather(*(c.get() for c in pool))  # every connection accepted and warm
        started = time.perf_counter()
        await asyncio.gather(*(drive(c) for c in pool))
        elapsed = time.perf_counter() - started
        for connection in pool:
            connection.close()
        return {"1 connection": latency,
                f"{connections} connections": {
                    "requests": connections * per_connection,
                    "per_s": round(connections * per_connection / elapsed, 1)}}
    finally:
        server.terminate()
        await asyncio.to_thread(server.wait, 10)


# -- bubblewrap -----------------------------------------------------------------------------

# The directory to listen in is its argument (bind-mounted at the same path: /tmp in the
# sandbox is its own tmpfs). Listens under a temporary name and renames the socket into
# place, so whoever connects to the real name finds a listening server (as the action proxy).
SANDBOX_SERVER = """
import os, socket, sys
d = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind(d + '/s.tmp'); s.listen(1); os.rename(d + '/s.tmp', d + '/s.sock')
c, _ = s.accept(); c.sendall(b'ok'); c.close()
"""


# The interpreter itself, not the venv's link to it: the venv may live under /tmp, which the
# sandbox replaces with an empty tmpfs (and -S needs nothing of the venv).
_BASE_PYTHON = os.path.realpath(sys.executable)


def _sandbox_until_answer(bwrap: str, io_dir: Path) -> float:
    socket_path = io_dir / "s.sock"
    socket_path.unlink(missing_ok=True)
    started = time.perf_counter()
    sandbox = subprocess.Popen([
        bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
        "--bind", str(io_dir), str(io_dir), "--unshare-all", "--die-with-parent", "--new-session",
        _BASE_PYTHON, "-I", "-S", "-c", SANDBOX_SERVER, str(io_dir)], stderr=subprocess.PIPE)
    try:
        while True:
            try:
                with socket.socket(socket.AF_UNIX) as client:
                    client.connect(str(socket_path))
                    if client.recv(2) == b"ok":
                        return ms_since(started)
            except (FileNotFoundError, ConnectionRefusedError):
                if sandbox.poll() is not None:
                    assert sandbox.stderr is not None
                    why = sandbox.stderr.read().decode(errors="replace")[-300:]
                    raise RuntimeError(f"the sandbox exited before answering: {why}") from None
                time.sleep(0.0005)
    finally:
        sandbox.wait(10)
        if sandbox.stderr is not None:
            sandbox.stderr.close()


def bubblewrap_spawn(bwrap: str | None, n: int) -> dict[str, Any]:
    """Spawns one after the other; a failed spawn is counted (and its reason kept), not fatal:
    on a crowded machine the odd one fails, and the others still say what a spawn costs."""
    if bwrap is None:
        return {"skipped": "bwrap is not installed"}
    samples, failures = [], []
    with tempfile.TemporaryDirectory(prefix="ft-bench-bwrap-") as io_dir:
        for _ in range(n + 2):
            try:
                samples.append(_sandbox_until_answer(bwrap, Path(io_dir)))
            except RuntimeError as exc:
                failures.append(str(exc))
    samples = samples[2:]  # the first spawns warm the page cache
    if not samples:
        raise RuntimeError(failures[-1])
    return {**summary(samples), "errors": len(failures), "last_error": failures[-1:]}
