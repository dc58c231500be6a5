"""The invoker's end of the direct path: a Unix socket where gateways send blocking
activations for actions this invoker holds warm (the socket's path is in every heartbeat).

Each frame in is a msgpack ``ActivationRequest``; each frame out a ``DirectAnswer`` with the
stored record, or without one when the pool had no idle warm container (the gateway then
publishes the request for the initializer to place). Requests on one connection run
concurrently and are answered as they finish.

Nothing is acked here because nothing was taken from a queue: if this invoker dies, the
gateway's connection breaks and the gateway publishes the request instead; if the gateway
dies, the activation still runs to its record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from bus.broker import spawn
from bus.codec import pack, unpack
from bus.frames import frame, read_frame
from bus.models import ActivationRecord, ActivationRequest, DirectAnswer

log = logging.getLogger(__name__)

RunDirect = Callable[[ActivationRequest], Awaitable[ActivationRecord | None]]


class DirectServer:
    def __init__(self, run: RunDirect, path: Path) -> None:
        self.run = run
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # left by a previous life of this invoker
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        # Gateways run as the same user; nobody else has business on this socket.
        self.path.chmod(0o600)

    async def stop_accepting(self) -> None:
        """No new connections (heartbeats stop advertising the path at the same time);
        requests already sent on open connections are still answered."""
        if self._server is not None:
            self._server.close()
            self.path.unlink(missing_ok=True)

    async def close(self) -> None:
        await self.stop_accepting()
        for writer in list(self._connections):
            writer.close()
        for task in list(self._tasks):
            task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                try:
                    body = await read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                spawn(self._answer(body, writer), self._tasks)
        except Exception:
            log.exception("direct connection failed")
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _answer(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            req = unpack(body, ActivationRequest)
        except Exception:
            log.exception("undecodable direct request dropped")
            return
        try:
            record = await self.run(req)
        except Exception:
            log.exception("direct activation %s failed", req.activation_id)
            record = None  # the gateway publishes it: at least once, never lost
        if writer.is_closing():
            return  # the gateway is gone; the record is stored all the same
        # One write call per frame: frames from concurrent answers never interleave.
        writer.write(frame(pack(DirectAnswer(activation_id=req.activation_id, record=record))))
        with contextlib.suppress(ConnectionError):
            await writer.drain()
