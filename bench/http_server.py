"""The smallest aiohttp server (GET / -> "ok"), run as its own process for the HTTP-server
floor, on uvloop as the gateway runs:

    .venv/bin/python -m bench.http_server --port 8123
"""

from __future__ import annotations

import argparse

import uvloop
from aiohttp import web


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(description="aiohttp floor server")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/", _ok)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
