"""Activation logs: the proxy writes each activation's formatted lines to a file in the
container's io directory before it answers /run, so reading them needs no engine call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
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


def _read_and_remove(path: Path, max_bytes: int) -> bytes | None:
    """At most ``max_bytes`` of the file, which is then removed; None when there is none.

    The action can write to the directory, so the file may be whatever it put there: a symlink
    to a host file (we read as the invoker's user), a FIFO that never ends, a sparse file of
    terabytes. Only a regular file, reached without following links, is read, and only as
    much of it as the log limit can use."""
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        try:
            fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError:  # ELOOP: a symlink
            data = b""
        else:
            with os.fdopen(fd, "rb") as file:
                data = file.read(max_bytes) if stat.S_ISREG(os.fstat(fd).st_mode) else b""
        with contextlib.suppress(OSError):
            os.unlink(path.name, dir_fd=dir_fd)
        return data
    finally:
        os.close(dir_fd)


def _lines_within(data: bytes, limit: int) -> list[str]:
    """The whole lines of ``data`` that fit in ``limit`` bytes, then the truncation line if
    anything was cut."""
    lines: list[str] = []
    used = 0
    truncated = len(data) > limit
    if truncated:  # what was read past the last whole line within the limit is cut
        data = data[: data.rfind(b"\n", 0, limit) + 1]
    # Only "\n" ends a log line; splitlines() would also break on \r, \x0c, \u2028...
    for line in data.decode(errors="replace").split("\n"):
        if not line:
            continue
        used += len(line) + 1
        if used > limit:
            truncated = True
            break
        lines.append(line)
    if truncated:
        lines.append(format_line("stderr", LOGS_TRUNCATED.format(n=limit)))
    return lines


def _read_lines(path: Path, limit: int) -> list[str] | None:
    data = _read_and_remove(path, limit + 1)  # one byte past the limit tells there was more
    return _lines_within(data, limit) if data else None


async def collect(path: Path, limit_mb: int, *, expect_file: bool) -> list[str]:
    """The log lines of one activation, cut at the action's log limit.

    ``expect_file`` is False when the proxy never answered (timeout, crash): then a missing
    file is expected and reported with OpenWhisk's "might be missing" line."""
    limit = limit_mb * 1024 * 1024
    # A stat of a local file costs microseconds, less than a hop to a thread; a big file is
    # read and split in one, so that ten megabytes of logs do not stall every other
    # activation this invoker is serving.
    try:
        size = os.lstat(path).st_size
    except OSError:
        size = -1
    if size > _INLINE_READ_LIMIT:
        lines = await asyncio.to_thread(_read_lines, path, limit)
    else:
        lines = _read_lines(path, limit) if size >= 0 else None
    if limit_mb == 0:
        return []
    lines = lines or []
    if not expect_file:
        lines.append(format_line("stderr", LOGS_MISSING))
    return lines
