"""Length-prefixed frames over a stream (the direct path between gateways and invokers): a
4-byte big-endian length, then that many bytes of msgpack. No HTTP: both ends are ours, and
the per-message cost is what the direct path exists to cut."""

from __future__ import annotations

import asyncio
import struct

HEADER = struct.Struct(">I")
MAX_FRAME = 64 * 1024 * 1024  # a request carries at most a few MB of payload and logs


class FrameTooLarge(ValueError):
    pass


def frame(payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME:
        raise FrameTooLarge(len(payload))
    return HEADER.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """The next frame's payload; ``asyncio.IncompleteReadError`` at the end of the stream."""
    (length,) = HEADER.unpack(await reader.readexactly(HEADER.size))
    if length > MAX_FRAME:
        raise FrameTooLarge(length)
    return await reader.readexactly(length)
