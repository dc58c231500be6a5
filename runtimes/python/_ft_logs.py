"""Log capture for the action proxy: fds 1 and 2 become pipes, so that the action and every
process it spawns log into them, and each activation's lines come out in OpenWhisk's format.

Part of the proxy (see proxy.py); standard library only.
"""

from __future__ import annotations

import fcntl
import os
import select
import sys
import termios
import threading
import time

SENTINEL = b"XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
LOG_LIMIT = 10 * 1024 * 1024
TRUNCATED = (
    f"Logs were truncated because the total bytes size exceeds the limit of {LOG_LIMIT} bytes."
)
# The limit counts what the action wrote, as OpenWhisk does; stamps and stream names add about
# 40 bytes a line on top. The file handed to the invoker is cut at twice the limit: the
# invoker reads no more than the limit of it, and the directory it is written to is small.
LOG_FILE_LIMIT = 2 * LOG_LIMIT
MAX_PARTIAL = 64 * 1024  # a longer line without newline is emitted in pieces
SENTINEL_WAIT_S = 2.0
STREAMS = ("stdout", "stderr")  # fds 1 and 2

# The proxy's own diagnostics go to the container's original stderr (`docker logs`), never
# into an activation's logs; taken before fd 2 becomes a log pipe.
DIAG_FD = os.dup(2)


def diag(message: str) -> None:
    try:
        os.write(DIAG_FD, f"ft-proxy: {message}\n".encode(errors="replace"))
    except OSError:
        pass


class LogCapture:
    """Turns fds 1 and 2 into pipes so that the action, and every process it spawns, writes
    into them; a thread turns what arrives on either into OpenWhisk log lines.

    The end of an activation is found as OpenWhisk finds it, with a sentinel line written to
    both pipes, unless both pipes are empty and both readers idle: then everything written so
    far is already in the buffer, and the thread hand-offs a sentinel costs (about half of
    a no-op activation) are skipped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._size = 0
        self._truncated = False
        self._seen = [0, 0]  # sentinels read, per stream
        self._expected = [0, 0]  # sentinels written, per stream
        self._stamp_cache = (-1, "")
        self._keep: list[int] = []  # our own ends, to restore fd 1/2 if an action closes them
        self._ino: list[int] = []
        self._read_fds: list[int] = []
        # The reader: blocked waiting for data with nothing read but unprocessed, and whether
        # it holds a partial line, per stream. Written by the reader only; read by collect().
        self._idle = False
        self._partial = [False, False]
        for fd in (1, 2):
            read_fd, write_fd = os.pipe()  # both non-inheritable
            os.dup2(write_fd, fd)  # inheritable: spawned processes log here too
            self._keep.append(write_fd)
            self._ino.append(os.fstat(write_fd).st_ino)
            self._read_fds.append(read_fd)
        # One thread for both: each one started costs a sandbox's start about a tenth of a ms.
        threading.Thread(target=self._reader, name="logs", daemon=True).start()
        # Line-buffered so that a print shows up as soon as it is made, as on a terminal.
        self.stdout = open(
            1, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
        )
        self.stderr = open(
            2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
        )
        sys.stdout, sys.stderr = self.stdout, self.stderr

    def _stamp(self, ns: int) -> str:
        seconds = ns // 1_000_000_000
        cached_seconds, prefix = self._stamp_cache
        if seconds != cached_seconds:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            self._stamp_cache = (seconds, prefix)
        return f"{prefix}.{ns % 1_000_000_000:09d}Z"

    def _reader(self) -> None:
        pending = [b"", b""]
        poller = select.poll()
        index_of = {}
        for index, fd in enumerate(self._read_fds):
            poller.register(fd, select.POLLIN)
            index_of[fd] = index
        while index_of:
            # Wait without consuming, so that data is either still in a pipe or marked as
            # being processed: collect() relies on that.
            self._idle = True
            ready = poller.poll()
            self._idle = False
            for fd, _events in ready:
                index = index_of[fd]
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:  # no writer left (never while the proxy holds its end)
                    poller.unregister(fd)
                    del index_of[fd]
                    continue
                *lines, pending[index] = (pending[index] + chunk).split(b"\n")
                if len(pending[index]) > MAX_PARTIAL:
                    lines.append(pending[index])
                    pending[index] = b""
                self._partial[index] = bool(pending[index])
                if lines:
                    self._add(index, STREAMS[index], lines, time.time_ns())

    def _add(self, index: int, stream: str, lines: list[bytes], ns: int) -> None:
        stamp = self._stamp(ns)
        with self._cond:
            sentinels = 0
            for line in lines:
                if line.endswith(SENTINEL):
                    # Whatever preceded the sentinel on its line is a last partial line.
                    sentinels += 1
                    line = line[: -len(SENTINEL)]
                    if not line:
                        continue
                if self._truncated:
                    continue
                self._size += len(line) + 1
                if self._size > LOG_LIMIT:
                    self._truncated = True
                    continue
                text = line.decode("utf-8", "replace")
                if text.endswith("\r"):
                    text = text[:-1]
                self._lines.append(f"{stamp:<30} {stream}: {text}")
            if sentinels:
                self._seen[index] += sentinels
                self._cond.notify_all()

    def collect(self) -> list[str]:
        """Mark the end of an activation on both streams, wait until both readers got there,
        and hand over everything logged up to that point."""
        for stream in (sys.stdout, sys.stderr, self.stdout, self.stderr):
            try:
                stream.flush()
            except Exception:  # an action may have replaced or closed them
                pass
        for index, fd in enumerate((1, 2)):
            self._repair(index, fd)
        if self._quiet():
            with self._cond:
                return self._take()
        for index, fd in enumerate((1, 2)):
            try:
                os.write(fd, SENTINEL + b"\n")
                self._expected[index] += 1
            except OSError:
                pass
        with self._cond:
            if not self._cond.wait_for(self._caught_up, SENTINEL_WAIT_S):
                diag("log sentinel not seen in time; logs of this activation may be incomplete")
                # Don't wait for these again on every later activation.
                self._expected = list(self._seen)
            return self._take()

    def _quiet(self) -> bool:
        """Whether all that was written to the pipes so far is in the buffer. The order of the
        checks matters: an empty pipe first, then an idle reader (which marks itself busy
        before it reads), so data read meanwhile cannot be missed."""
        for index, fd in enumerate(self._read_fds):
            unread = int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder)
            if unread or self._partial[index]:
                return False
        return self._idle

    def _take(self) -> list[str]:
        lines, self._lines, self._size = self._lines, [], 0
        if self._truncated:
            self._truncated = False
            lines.append(self.truncation_line())
        return lines

    def truncation_line(self) -> str:
        return f"{self._stamp(time.time_ns()):<30} stderr: {TRUNCATED}"

    def _caught_up(self) -> bool:
        return self._seen[0] >= self._expected[0] and self._seen[1] >= self._expected[1]

    def _repair(self, index: int, fd: int) -> None:
        """An action that closed or redirected fd 1/2 would lose every later log line and
        make each activation wait for a sentinel that never comes: point it back at its pipe."""
        try:
            if os.fstat(fd).st_ino == self._ino[index]:
                return
        except OSError:
            pass
        os.dup2(self._keep[index], fd)
