"""The invoker's proxy client, against sockets of this test's own."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from invoker.proxy_client import ProxyClient, ProxyConnectionError


async def test_a_connect_waits_for_the_proxy_to_listen(tmp_path: Path) -> None:
    path = tmp_path / "proxy.sock"
    client = ProxyClient(path)
    waiting = asyncio.create_task(client.connect(timeout=10))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # no socket yet: still waiting
    server = await asyncio.start_unix_server(lambda _r, w: w.close(), path=str(path))
    try:
        await asyncio.wait_for(waiting, timeout=5)
    finally:
        client.close()
        server.close()


async def test_an_abandoned_connect_gives_up_at_once(tmp_path: Path) -> None:
    """Its container exited while starting: no waiting out the start timeout."""
    client = ProxyClient(tmp_path / "proxy.sock")
    waiting = asyncio.create_task(client.connect(timeout=30))
    await asyncio.sleep(0.2)
    client.abandon()
    # Without giving up it would wait 30 s: the 5 s bound here would fail it.
    with pytest.raises(ProxyConnectionError, match="exited while starting"):
        await asyncio.wait_for(waiting, timeout=5)
