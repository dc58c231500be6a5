"""A minimal HTTP/1.1 client for the action proxy's Unix socket.

The proxy speaks plain HTTP/1.1 with Content-Length bodies on a socket only we talk to, so a
raw asyncio client is enough, and it costs ~0.03 ms per round trip where aiohttp costs ~0.16
and httpx ~1 ms: on a warm activation this is most of the invoker's own overhead.
"""

from __future__ import annotations

import asyncio
from pathlib import Path


class ProxyConnectionError(Exception):
    """The proxy closed the connection or never answered: the container is broken."""


class ResponseTooLarge(Exception):
    """The proxy announced a body above the caller's limit; only its head was read and the
    connection dropped."""

    def __init__(self, length: int, head: bytes) -> None:
        super().__init__(f"response of {length} bytes")
        self.length = length
        self.head = head


class ProxyClient:
    """One keep-alive connection to one container's proxy. Requests are serialized."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._abandoned = False

    async def connect(self, timeout: float) -> None:
        """Wait until the proxy accepts connections (it is starting with the container)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.001
        while True:
            try:
                self._reader, self._writer = await asyncio.open_unix_connection(
                    str(self.socket_path), limit=2**24
                )
                return
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if self._abandoned:
                    raise ProxyConnectionError("the container exited while starting") from exc
                if loop.time() + delay > deadline:
                    raise ProxyConnectionError(f"proxy did not start: {exc}") from exc
                # Only on container start: the socket appears within a few tens of ms (a
                # sandbox's in ~20), so the first tenth of a second is watched closely; a
                # refused connect costs microseconds.
                await asyncio.sleep(delay)
                if loop.time() > deadline - timeout + 0.1:
                    delay = min(delay * 1.5, 0.05)

    async def post(
        self, path: str, body: bytes, timeout: float, max_body: int | None = None
    ) -> tuple[int, bytes]:
        """POST a JSON body; returns (status, body). Raises TimeoutError past ``timeout``,
        ProxyConnectionError if the connection breaks, ResponseTooLarge past ``max_body``."""
        async with self._lock:
            if self._writer is None or self._writer.is_closing():
                raise ProxyConnectionError("not connected")
            try:
                async with asyncio.timeout(timeout):
                    return await self._exchange(path, body, max_body)
            except (TimeoutError, ResponseTooLarge):
                self.close()
                raise
            except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
                self.close()
                raise ProxyConnectionError(str(exc) or type(exc).__name__) from exc

    async def _exchange(
        self, path: str, body: bytes, max_body: int | None
    ) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        self._writer.write(
            b"POST %s HTTP/1.1\r\nHost: action\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (path.encode(), len(body)) + body
        )
        status_line = await self._reader.readuntil(b"\r\n")
        parts = status_line.split(None, 2)
        if len(parts) < 2:
            raise ValueError(f"bad status line {status_line!r}")
        status = int(parts[1])
        length = 0
        close = False
        while True:
            line = await self._reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if max_body is not None and length > max_body:
            raise ResponseTooLarge(length, await self._reader.readexactly(1024))
        payload = await self._reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, payload

    def abandon(self) -> None:
        """Its container has exited: a connect still waiting for the proxy gives up."""
        self._abandoned = True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._reader = None
