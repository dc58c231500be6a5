"""Activation logs: the proxy writes each activation's formatted lines to a file in the
container's io directory before it answers /run, so reading them needs no engine call."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path

from invoker.outcome import LOGS_MISSING, LOGS_TRUNCATED

_INLINE_READ_LIMIT = 64 * 1024  # bigger files are read in a thread


def format_line(stream: str, message: str, at_ns: int | None = None) -> str:
    """OpenWhisk's LogLine: ISO-8601 timestamp with nanoseconds, padded to 30 chars."""
    ns = at_ns if at_ns is not None else _now_ns()
    stamp = datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ns % 1_000_000_000:09d}Z".ljust(30) + f" {stream}: {message}"


def _now_ns() -> int:
    import time

    return time.time_ns()


def _read_and_remove(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    os.unlink(path)
    return data


async def collect(path: Path, limit_mb: int, *, expect_file: bool) -> list[str]:
    """The log lines of one activation, cut at the action's log limit.

    ``expect_file`` is False when the proxy never answered (timeout, crash): then a missing
    file is expected and reported with OpenWhisk's "might be missing" line."""
    # A stat of a local file costs microseconds, less than a hop to a thread.
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        size = -1
    if size > _INLINE_READ_LIMIT:
        data = await asyncio.to_thread(_read_and_remove, path)
    else:
        data = _read_and_remove(path) if size >= 0 else None
    if limit_mb == 0:
        return []
    lines: list[str] = []
    if data:
        limit = limit_mb * 1024 * 1024
        used = 0
        # Only "\n" ends a log line; splitlines() would also break on \r, \x0c, \u2028...
        for line in data.decode(errors="replace").split("\n"):
            if not line:
                continue
            used += len(line) + 1
            if used > limit:
                lines.append(format_line("stderr", LOGS_TRUNCATED.format(n=limit)))
                break
            lines.append(line)
    if not expect_file:
        lines.append(format_line("stderr", LOGS_MISSING))
    return lines
