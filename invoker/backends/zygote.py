"""The invoker's side of a runtime's zygote (``runtimes/python/_ft_zygote.py``): a process
started once per kind that forks each new sandbox from an interpreter that has already
started and imported the proxy.

The zygote is reached over a SOCK_SEQPACKET socketpair. A request is one JSON message with
descriptors: a report socket, the sandbox's stderr, and the ``cgroup.procs`` files of its
cgroups, opened here (the kernel checks the opener's rights when a process joins through
one). The sandbox reports on the report socket once it is set up; as this socket passes
credentials, the kernel adds the sandbox's pid in this process's pid namespace, so the
invoker follows it with a pidfd like any child of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
from collections.abc import Sequence
from pathlib import Path

REPORT_TIMEOUT_S = 10.0
_UCRED = struct.Struct("iII")  # pid, uid, gid


class ZygoteUnavailable(RuntimeError):
    """The zygote is gone (it died, or was never started): start sandboxes without it."""


class SpawnFailed(RuntimeError):
    pass


class Zygote:
    """One running zygote: its process (bubblewrap, which runs it) and control socket."""

    def __init__(self, process: asyncio.subprocess.Process, control: socket.socket) -> None:
        self.process = process
        self._control = control

    @staticmethod
    def control_pair() -> tuple[socket.socket, socket.socket]:
        """(ours, the zygote's): the zygote's end is handed to it as an inherited fd."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        return ours, theirs

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and self._control.fileno() >= 0

    async def spawn(self, request: dict[str, object], stderr: int,
                    cgroup_procs: Sequence[Path]) -> int:
        """Fork a sandbox; return its pid once its proxy listens."""
        with self._fork(request, stderr, cgroup_procs) as report:
            return await _reported_pid(report)

    def spare(self, stderr: int, cgroup_procs: Sequence[Path]) -> Spare:
        """Fork a spare sandbox: it joins its cgroups now (what takes an RCU grace period
        on cgroup v1) and waits for the request that ``Spare.start`` sends."""
        report = self._fork({"spare": True}, stderr, cgroup_procs)
        return Spare(report)

    def _fork(self, request: dict[str, object], stderr: int,
              cgroup_procs: Sequence[Path]) -> socket.socket:
        """Ask for a child; our end of its report socket."""
        if not self.alive:
            raise ZygoteUnavailable("the zygote is not running")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with contextlib.ExitStack() as opened:
            opened.callback(theirs.close)
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            ours.setblocking(False)
            fds = [theirs.fileno(), stderr]
            for path in cgroup_procs:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                opened.callback(os.close, fd)
                fds.append(fd)
            try:
                socket.send_fds(self._control, [json.dumps(request).encode()], fds)
            except OSError as exc:
                ours.close()
                raise ZygoteUnavailable(f"the zygote does not take requests: {exc}") from exc
        return ours

    def close(self) -> None:
        """Closing the control socket ends the zygote, and with it every sandbox it forked
        (their pid namespaces are nested in its own)."""
        self._control.close()


class Spare:
    """A spare sandbox of a zygote, in its cgroups, waiting for its request."""

    def __init__(self, report: socket.socket) -> None:
        self._report = report

    async def start(self, request: dict[str, object]) -> int:
        """Make it the sandbox ``request`` describes; its pid once its proxy listens."""
        with self._report as report:
            try:
                report.send(json.dumps(request).encode())
            except OSError as exc:  # it died waiting
                raise SpawnFailed(f"the spare sandbox is gone: {exc}") from exc
            return await _reported_pid(report)

    def discard(self) -> None:
        """It ends when its socket closes."""
        self._report.close()


async def _reported_pid(report: socket.socket) -> int:
    try:
        async with asyncio.timeout(REPORT_TIMEOUT_S):
            await _readable(report.fileno())
    except TimeoutError:
        raise SpawnFailed(f"no report within {REPORT_TIMEOUT_S:.0f} s") from None
    message, ancillary, _flags, _addr = report.recvmsg(16, socket.CMSG_SPACE(_UCRED.size))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and message:
            pid, _uid, _gid = _UCRED.unpack(data[:_UCRED.size])
            return pid
    raise SpawnFailed("the sandbox ended before it was set up (its stderr says why)")


# A forked sandbox is no child of the invoker's: it is followed through descriptors, each
# watched on the loop only while it is awaited (and never closed while watched).


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def pidfd_of(pid: int) -> int | None:
    """A pidfd of process ``pid`` (None if it has gone already): to wait for its exit and to
    signal it, with no risk of reaching another process that got its number meanwhile."""
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        return None


async def exited(pidfd: int | None) -> None:
    """Wait until the process of ``pidfd`` has exited (a pidfd turns readable then). The
    caller closes it."""
    if pidfd is not None:
        await _readable(pidfd)


async def read_to_end(fd: int, tail: bytearray, keep: int) -> None:
    """Read a pipe to its end, keeping its last ``keep`` bytes in ``tail``; closes ``fd``.
    Not through a pipe transport: uvloop's closes the descriptor itself and the file object
    handed to it closes it again, possibly once the number is the next sandbox's pipe."""
    os.set_blocking(fd, False)
    try:
        while True:
            await _readable(fd)
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                return
            tail += chunk
            del tail[:-keep]
    finally:
        os.close(fd)
