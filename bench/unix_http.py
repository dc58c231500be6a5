"""The floor of HTTP over a Unix socket into a container: one keep-alive connection, POST /run
to an initialized action proxy, with three clients — the platform's raw asyncio client (what
the invoker uses), aiohttp and httpx.

httpx lives only in the bench venv, so that client runs there as a child process:

    bench/.venv/bin/python -m bench.unix_http --socket /path/proxy.sock --client httpx --n 500

printing its summary as JSON. Clients are imported lazily so this module loads in either venv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.stats import summary, timed_loop

RUN_BODY = b'{"value":{}}'
CLIENTS = ("raw", "aiohttp", "httpx")


async def _raw(socket: Path, n: int) -> list[float]:
    from invoker.proxy_client import ProxyClient

    client = ProxyClient(socket)
    await client.connect(timeout=5)
    try:
        return await timed_loop(lambda: client.post("/run", RUN_BODY, timeout=5), n, n // 10)
    finally:
        client.close()


async def _aiohttp(socket: Path, n: int) -> list[float]:
    import aiohttp

    connector = aiohttp.UnixConnector(path=str(socket), limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def call() -> None:
            async with session.post("http://action/run", data=RUN_BODY,
                                    headers={"Content-Type": "application/json"}) as r:
                await r.read()

        return await timed_loop(call, n, n // 10)


async def _httpx(socket: Path, n: int) -> list[float]:
    import httpx

    transport = httpx.AsyncHTTPTransport(uds=str(socket))
    async with httpx.AsyncClient(transport=transport, base_url="http://action") as client:
        async def call() -> None:
            (await client.post("/run", content=RUN_BODY,
                               headers={"Content-Type": "application/json"})).read()

        return await timed_loop(call, n, n // 10)


MEASURES: dict[str, Callable[[Path, int], Awaitable[list[float]]]] = {
    "raw": _raw, "aiohttp": _aiohttp, "httpx": _httpx,
}


async def round_trips(socket: Path, client: str, n: int) -> dict[str, float]:
    return summary(await MEASURES[client](socket, n))


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTP round trips over a Unix socket")
    parser.add_argument("--socket", type=Path, required=True)
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(round_trips(args.socket, args.client, args.n))))


if __name__ == "__main__":
    main()
