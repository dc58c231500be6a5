"""The sandbox backend ("RunF"): function containers without a container engine on the hot
path. A sandbox is the runtime image's root filesystem, unpacked once per image version and
mounted read-only (``rootfs.py``), entered through Linux namespaces by bubblewrap:

- rootless: bubblewrap itself runs as the container user (1000), in a user namespace of its
  own with no capabilities, ``no_new_privs``, nested user namespaces disabled, and the
  seccomp filter of ``seccomp.py``;
- its own pid, ipc, uts, cgroup and network namespaces (loopback only: no network at all);
- read-only root, private tmpfs ``/tmp`` and ``/dev/shm``, the proxy directory bind-mounted at
  ``/ft`` exactly as the Docker backend mounts it, so the proxies and the ``/init`` + ``/run``
  protocol are the same;
- the Docker backend's limits as cgroups (``cgroups.py``): memory = memory + swap, pids, CPU
  share and cap, and the open-files limit.

Starting one is a fork and three execs (sh joins the cgroups and sets the file limit, setpriv
drops to the container user, bubblewrap builds the namespaces), then the runtime's proxy.
The only engine call is reading an image version once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bus.config import Settings
from invoker.backends import ContainerHandle, cpu_cap, cpu_shares
from invoker.backends.cgroups import Limits, SandboxCgroup, remove_all
from invoker.backends.io_dirs import IoDirs, release_io_dir
from invoker.backends.rootfs import Rootfs, RootfsCache, traversable
from invoker.backends.seccomp import write_program
from invoker.backends.zygote import (
    Spare,
    SpawnFailed,
    Zygote,
    ZygoteUnavailable,
    exited,
    pidfd_of,
    read_to_end,
)
from runtimes.kinds import image_for
from runtimes.profiles import profile_env

log = logging.getLogger(__name__)

STDERR_KEPT = 4096  # the end of a sandbox's own stderr, logged if it dies on its own
KILL_WAIT_S = 5.0
# sh: join every cgroup given before "--" (so all the sandbox forks is counted from the first
# instruction), set the open-files limit, then become the rest of the command line.
_JOIN = ('while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; '
         'ulimit -n {nofile} || exit 125; exec "$@"')


PYTHON_PROXY = "/ft-proxy/proxy.py"
ZYGOTE = "/ft-proxy/_ft_zygote.py"
# A zygote's own cgroup: its interpreter, and each child until it joins its sandbox's groups.
ZYGOTE_MEMORY_MB = 128
ZYGOTE_PIDS = 256
# Spare sandboxes each zygote keeps in cgroups of their own, so a cold start does not wait for
# the join (an RCU grace period on cgroup v1).
SPARES_PER_KIND = 2
KEPT_GROUPS = 64  # empty sandbox cgroups kept for reuse, at most


class SandboxUnavailable(RuntimeError):
    pass


@dataclass
class SpareSandbox:
    spare: Spare
    cgroup: SandboxCgroup  # without limits until it is taken
    stderr: int  # the read end of its stderr

    def discard(self) -> None:
        self.spare.discard()
        os.close(self.stderr)


@dataclass
class Sandbox:
    handle: ContainerHandle
    cgroup: SandboxCgroup
    process: asyncio.subprocess.Process | None  # bubblewrap's; None for a zygote's child
    # A zygote's child: pid 1 of the sandbox's pid namespace, whose end ends all in it.
    pidfd: int | None = None
    stderr_tail: bytearray = field(default_factory=bytearray)
    exited: asyncio.Event = field(default_factory=asyncio.Event)


class SandboxBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tools = {tool: _require(tool) for tool in ("sh", "setpriv", "bwrap")}
        self._uid, self._gid = (int(x) for x in settings.container_user.split(":"))
        root = settings.sandbox_dir
        self.rootfs = RootfsCache(root / "rootfs", settings.docker_url)
        self._io_root = root / "io" / settings.invoker_id
        traversable(self._io_root)
        self.io_dirs = IoDirs(self._io_root, self._uid, self._gid,
                              settings.container_io_quota_mb, shared=settings.sandbox_zygote)
        self._cgroup_base = f"funtainer/{settings.invoker_id}"
        self._seccomp = write_program(root / f"seccomp-{settings.invoker_id}.bpf")
        # Every sandbox gets the read end; only this process holds the write end (close-on-
        # exec), so it closes however the invoker dies, and the proxies then end their
        # sandboxes. bubblewrap's --die-with-parent alone leaves a window: a sandbox whose
        # start was under way when the invoker died is bound to no parent at all.
        self._lifeline, self._lifeline_held = os.pipe2(os.O_CLOEXEC)
        if settings.container_network != "none":
            log.warning("the sandbox backend has no network for actions: FT_CONTAINER_NETWORK "
                        "%r is ignored", settings.container_network)
        self._live: dict[str, Sandbox] = {}
        self._zygotes: dict[str, Zygote | None] = {}  # kind -> its zygote (None: not to be had)
        self._spares: dict[str, list[SpareSandbox]] = {}
        # Groups sandboxes left, empty, for new ones (filled from threads: deque's ends are).
        self._empty_groups: deque[SandboxCgroup] = deque()
        self._zygote_lock = asyncio.Lock()
        self._retired_zygotes: list[Zygote] = []  # asked for no more sandboxes
        self._on_died: Callable[[str], None] | None = None
        self._waiters: set[asyncio.Future[object]] = set()

    def watch(self, on_died: Callable[[str], None]) -> None:
        self._on_died = on_died

    def _name(self, pool_id: str) -> str:
        return f"ft_{self.settings.invoker_id}_{pool_id}"

    def _limits(self, memory: int) -> Limits:
        s = self.settings
        return Limits(memory_mb=memory, pids=s.container_pids_limit,
                      cpu_shares=cpu_shares(s, memory), cpu_quota=cpu_cap(s, memory))

    def _command(self, name: str, rootfs: Rootfs, proxy_dir: Path, cgroup: SandboxCgroup,
                 seccomp_fd: int | None, command: list[str]) -> list[str]:
        """A sandbox (``seccomp_fd`` given: no capabilities, the filter loaded) or a zygote
        (capabilities kept inside its user namespace, for its children's namespaces and
        mounts; they drop them and load the filter themselves)."""
        s, tmpfs = self.settings, str(self.settings.container_tmpfs_mb * 1024 * 1024)
        uid, gid = str(self._uid), str(self._gid)
        if seccomp_fd is not None:
            confined = ["--uid", uid, "--gid", gid, "--disable-userns", "--cap-drop", "ALL",
                        "--seccomp", str(seccomp_fd),
                        "--perms", "1777", "--size", tmpfs, "--tmpfs", "/tmp",
                        "--perms", "1777", "--size", tmpfs, "--tmpfs", "/dev/shm"]
        else:
            # Root of its user namespace (uid 1000 outside), in that one namespace only:
            # with --uid 1000 or --disable-userns bubblewrap nests a second one, and every
            # mount a child copied would be locked (it could not detach the zygote's /ft and
            # /proc). Each child becomes uid 1000 in a user namespace of its own.
            # Pid 1 of its pid namespace, where each sandbox's is nested: whenever it ends,
            # the kernel ends them all.
            confined = ["--uid", "0", "--gid", "0", "--cap-add", "ALL", "--as-pid-1"]
        return [
            self._tools["sh"], "-c", _JOIN.format(nofile=s.container_nofile), "sh",
            *map(str, cgroup.procs_files), "--",
            self._tools["setpriv"], "--reuid", uid, "--regid", gid, "--clear-groups",
            self._tools["bwrap"],
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-net", "--unshare-cgroup-try",
            # Its name as its host name (unique across invokers), as Docker names a
            # container's host by its id.
            "--hostname", name,
            "--die-with-parent", "--new-session",
            "--ro-bind", str(rootfs.path), "/",
            "--proc", "/proc", "--dev", "/dev",
            *confined,
            # bubblewrap's /dev is a tmpfs its user owns: read-only, as Docker's is to uid
            # 1000 (not recursive: /dev/shm below stays writable).
            "--remount-ro", "/dev",
            "--bind", str(proxy_dir), "/ft",
            "--chdir", rootfs.workdir,
            "--", *command,
        ]

    async def create(self, pool_id: str, kind: str, memory: int) -> ContainerHandle:
        rootfs = await self.rootfs.ensure(image_for(kind, self.settings.image_prefix))
        zygote = await self._zygote_for(kind, rootfs)
        name = self._name(pool_id)
        io_dir = self.io_dirs.prepare(pool_id)
        handle = ContainerHandle(pool_id=pool_id, name=name, engine_id=name, io_dir=io_dir)
        env = {**rootfs.env, **profile_env(kind, memory, cpu_cap(self.settings, memory)),
               "__OW_API_HOST": self.settings.api_host, "FT_PROXY_DIR": "/ft"}
        request = {"id": handle.pool_id, "io_dir": io_dir.name, "hostname": handle.name,
                   "env": env,
                   "workdir": rootfs.workdir, "nofile": self.settings.container_nofile,
                   "tmpfs": self.settings.container_tmpfs_mb * 1024 * 1024}
        limits = self._limits(memory)
        sandbox = None
        spares = self._spares.get(kind)
        if zygote is not None and spares:
            sandbox = await self._from_spare(spares.pop(), handle, limits, request)
            self._top_up(kind, zygote)
        if sandbox is None:
            cgroup = self._group(pool_id)
            try:
                cgroup.create(limits)
                if zygote is not None:
                    sandbox = await self._fork(zygote, kind, handle, cgroup, request)
                if sandbox is None:
                    sandbox = await self._start(handle, cgroup, rootfs, env)
            except BaseException:
                await asyncio.to_thread(self._remove, cgroup, io_dir)
                raise
        self._live[name] = sandbox
        return handle

    async def _from_spare(self, spare: SpareSandbox, handle: ContainerHandle, limits: Limits,
                          request: dict[str, object]) -> Sandbox | None:
        """A spare sandbox given its limits and made this one; None if it is gone (the
        caller then makes one the usual way)."""
        try:
            spare.cgroup.rename(handle.pool_id)
            spare.cgroup.apply(limits)
            pid = await spare.spare.start(request)
        except (OSError, SpawnFailed) as exc:
            log.warning("a spare sandbox could not be used (%s)", exc)
            os.close(spare.stderr)
            await asyncio.to_thread(_remove_group, spare.cgroup)  # kills what is left first
            return None
        except BaseException:
            spare.discard()
            await asyncio.to_thread(_remove_group, spare.cgroup)
            raise
        sandbox = Sandbox(handle, spare.cgroup, None, pidfd_of(pid))
        self._follow(sandbox, read_to_end(spare.stderr, sandbox.stderr_tail, STDERR_KEPT),
                     exited(sandbox.pidfd))
        return sandbox

    def _top_up(self, kind: str, zygote: Zygote) -> None:
        """Spare sandboxes for ``kind`` until it has ``SPARES_PER_KIND``."""
        spares = self._spares.setdefault(kind, [])
        while len(spares) < SPARES_PER_KIND:
            spare = self._new_spare(kind, zygote)
            if spare is None:
                return
            spares.append(spare)

    def _new_spare(self, kind: str, zygote: Zygote) -> SpareSandbox | None:
        """Its cgroups made (without limits) and its child asked for; the child joins them
        while the invoker goes on."""
        cgroup = self._group(f"spare-{uuid.uuid4().hex[:12]}")
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            cgroup.create(None)
            spare = zygote.spare(write_end, cgroup.procs_files)
        except (OSError, ZygoteUnavailable) as exc:
            os.close(read_end)
            with contextlib.suppress(OSError):
                cgroup.remove()
            log.warning("no spare %s sandbox (%s)", kind, exc)
            return None
        finally:
            os.close(write_end)
        return SpareSandbox(spare, cgroup, read_end)

    def _group(self, name: str) -> SandboxCgroup:
        """An empty group a sandbox left (renamed ``name`` where the kernel allows), or a new
        one of that name; either way ``create`` then makes sure it exists."""
        try:
            cgroup = self._empty_groups.popleft()
        except IndexError:
            return SandboxCgroup(self._cgroup_base, name)
        try:
            cgroup.rename(name)
        except OSError as exc:
            log.warning("could not rename cgroup %s (%s)", cgroup.dirs[0], exc)
            self._background(asyncio.to_thread(_remove_group, cgroup))  # may wait: no loop
            return SandboxCgroup(self._cgroup_base, name)
        return cgroup

    async def _start(self, handle: ContainerHandle, cgroup: SandboxCgroup, rootfs: Rootfs,
                     env: dict[str, str]) -> Sandbox:
        """A sandbox of its own: bubblewrap, then the runtime's interpreter from the start."""
        with contextlib.ExitStack() as opened:
            seccomp_fd = _open(opened, self._seccomp)
            lifeline = self._lifeline_for(opened, env)
            process = await asyncio.create_subprocess_exec(
                *self._command(handle.name, rootfs, handle.io_dir, cgroup, seccomp_fd,
                               rootfs.command), env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE, pass_fds=[seccomp_fd, lifeline],
                start_new_session=True)
        sandbox = Sandbox(handle, cgroup, process)
        assert process.stderr is not None
        self._follow(sandbox, _kept_stream(process.stderr, sandbox.stderr_tail),
                     process.wait())
        return sandbox

    async def _fork(self, zygote: Zygote, kind: str, handle: ContainerHandle,
                    cgroup: SandboxCgroup, request: dict[str, object]) -> Sandbox | None:
        """A sandbox forked from its kind's zygote; None if the zygote could not make it
        (then it is not asked again, and bubblewrap starts this one)."""
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            pid = await zygote.spawn(request, write_end, cgroup.procs_files)
        except (ZygoteUnavailable, SpawnFailed) as exc:
            os.close(read_end)
            log.warning("the %s zygote could not start a sandbox (%s); its sandboxes start "
                        "without it from now on", kind, exc)
            self._zygotes[kind] = None
            # Not closed: its end would end the sandboxes it made, which still serve.
            self._retired_zygotes.append(zygote)
            self._discard_spares(kind)
            await asyncio.to_thread(cgroup.kill)
            return None
        finally:
            os.close(write_end)
        sandbox = Sandbox(handle, cgroup, None, pidfd_of(pid))
        self._follow(sandbox, read_to_end(read_end, sandbox.stderr_tail, STDERR_KEPT),
                     exited(sandbox.pidfd))
        return sandbox

    def _lifeline_for(self, opened: contextlib.ExitStack, env: dict[str, str]) -> int:
        # Its own open file description of the lifeline's read end: flags set on it inside
        # (Node makes what it watches non-blocking) stay with this sandbox.
        lifeline = _open(opened, f"/proc/self/fd/{self._lifeline}")
        env["FT_LIFELINE_FD"] = str(lifeline)
        return lifeline

    async def _zygote_for(self, kind: str, rootfs: Rootfs) -> Zygote | None:
        """The kind's zygote, started now if it has none running (None: the kind's runtime
        has none, or it cannot run here)."""
        if not self.settings.sandbox_zygote or kind == "blackbox":
            return None
        zygote = self._zygotes.get(kind)
        if zygote is not None and zygote.alive:
            return zygote
        if kind in self._zygotes and zygote is None:
            return None
        async with self._zygote_lock:
            zygote = self._zygotes.get(kind)
            if zygote is None or not zygote.alive:
                self._discard_spares(kind)
                zygote = await self._start_zygote(kind, rootfs)
                self._zygotes[kind] = zygote
                if zygote is not None:
                    self._top_up(kind, zygote)
        return zygote

    def _discard_spares(self, kind: str) -> None:
        """Their children end as their sockets close; their groups are removed after."""
        for spare in self._spares.pop(kind, []):
            spare.discard()
            self._background(asyncio.to_thread(_remove_group, spare.cgroup))

    def _background(self, work: Awaitable[object]) -> None:
        """Run ``work`` on its own, held until done (and cancelled by ``close``)."""
        task = asyncio.ensure_future(work)
        self._waiters.add(task)
        task.add_done_callback(self._waiters.discard)

    async def _start_zygote(self, kind: str, rootfs: Rootfs) -> Zygote | None:
        command = _zygote_command(rootfs)
        if command is None:
            return None
        # New proxy directories (each its own tmpfs) must appear under the zygote's /ft.
        await asyncio.to_thread(self.io_dirs.share)
        cgroup = SandboxCgroup(self._cgroup_base, f"zygote-{re.sub('[^a-z0-9]+', '-', kind)}")
        cgroup.kill()
        with contextlib.suppress(OSError):
            cgroup.remove()
        cgroup.create(Limits(memory_mb=ZYGOTE_MEMORY_MB, pids=ZYGOTE_PIDS, cpu_shares=1024,
                             cpu_quota=None))
        ours, theirs = Zygote.control_pair()
        env = {**rootfs.env, "FT_PROXY_DIR": "/ft", "FT_ZYGOTE_FD": str(theirs.fileno())}
        with contextlib.ExitStack() as opened:
            opened.callback(theirs.close)
            seccomp_fd = _open(opened, self._seccomp)
            env["FT_SECCOMP_FD"] = str(seccomp_fd)
            lifeline = self._lifeline_for(opened, env)
            process = await asyncio.create_subprocess_exec(
                *self._command(self._name(f"zygote-{kind}"), rootfs, self._io_root, cgroup,
                               None, command), env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=[theirs.fileno(), seccomp_fd, lifeline], start_new_session=True)
        zygote = Zygote(process, ours)
        self._background(_log_zygote(kind, process))
        log.info("started the %s zygote", kind)
        return zygote

    def _follow(self, sandbox: Sandbox, stderr_read: Awaitable[None],
                ended: Awaitable[object]) -> None:
        self._background(self._followed(sandbox, stderr_read, ended))

    async def _followed(self, sandbox: Sandbox, stderr_read: Awaitable[None],
                        ended: Awaitable[object]) -> None:
        """Keep the end of its stderr; when it exits unasked, say so and report it died."""
        await stderr_read
        code = await ended
        sandbox.exited.set()
        live = self._live.get(sandbox.handle.engine_id) is sandbox
        if not live:
            _close_pidfd(sandbox)  # destroyed before it ended: destroy no longer needs it
        elif self._on_died is not None:
            log.warning("sandbox %s exited with %s: %s", sandbox.handle.name, code,
                        sandbox.stderr_tail.decode(errors="replace").strip()[-500:])
            self._on_died(sandbox.handle.engine_id)

    async def destroy(self, handle: ContainerHandle) -> None:
        sandbox = self._live.pop(handle.engine_id, None)
        if sandbox is None:
            await asyncio.to_thread(release_io_dir, handle.io_dir)
            return
        if sandbox.exited.is_set():
            _close_pidfd(sandbox)  # it ended on its own: its follower is done with it
        else:
            self._kill(sandbox)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(KILL_WAIT_S):
                    await sandbox.exited.wait()
        # A zygote's child seen to exit was pid 1 of its pid namespace, which the kernel
        # empties before that exit is reported: its group holds nothing any more.
        emptied = sandbox.process is None and sandbox.exited.is_set()
        await asyncio.to_thread(self._remove, sandbox.cgroup, handle.io_dir, emptied)

    @staticmethod
    def _kill(sandbox: Sandbox) -> None:
        """Signal its end. No thread needed: a signal to pid 1 of its pid namespace (which
        takes all else in it), or a read of its group's processes and a signal to each."""
        if sandbox.pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(sandbox.pidfd, signal.SIGKILL)
        else:
            sandbox.cgroup.signal_kill()
        if sandbox.process is not None:
            with contextlib.suppress(ProcessLookupError):
                sandbox.process.kill()

    def _remove(self, cgroup: SandboxCgroup, io_dir: Path, emptied: bool = False) -> None:
        """Its group and its proxy directory, both kept for other sandboxes once the group is
        empty (nothing of this one can reach the directory any more) and saw no OOM kill
        (that count only grows). Making and removing a group costs more than its reuse, which
        rewrites only the limits that differ. ``emptied``: known empty, not to be read."""
        if not emptied:
            cgroup.kill()
        if ((emptied or not cgroup.pids()) and len(self._empty_groups) < KEPT_GROUPS
                and not cgroup.oom_killed()):
            self._empty_groups.append(cgroup)
            self.io_dirs.release(io_dir)
        elif _remove_group(cgroup):  # gone: it was empty
            self.io_dirs.release(io_dir)
        else:
            release_io_dir(io_dir)

    async def was_oom_killed(self, handle: ContainerHandle) -> bool:
        sandbox = self._live.get(handle.engine_id)
        if sandbox is None:
            return False
        # The proxy's socket closes as the kernel kills it; the group's count is already up.
        for _ in range(3):
            if sandbox.cgroup.oom_killed():
                return True
            await asyncio.sleep(0.02)
        return False

    async def remove_leftovers(self) -> int:
        self._empty_groups.clear()  # removed with the rest: they are under the same base
        removed = await asyncio.to_thread(remove_all, self._cgroup_base)
        await asyncio.to_thread(self.io_dirs.release_all)
        return removed

    async def close(self) -> None:
        for name in list(self._live):
            await self.destroy(self._live[name].handle)
        for kind in list(self._spares):
            self._discard_spares(kind)
        for zygote in [*self._zygotes.values(), *self._retired_zygotes]:
            if zygote is not None:
                zygote.close()
        for task in list(self._waiters):
            task.cancel()
        while self._empty_groups:  # not leftovers: not to be counted as such below
            await asyncio.to_thread(_remove_group, self._empty_groups.popleft())
        removed = await self.remove_leftovers()
        if removed:
            log.info("removed %d sandboxes created while stopping", removed)
        os.close(self._lifeline_held)
        os.close(self._lifeline)


def _close_pidfd(sandbox: Sandbox) -> None:
    if sandbox.pidfd is not None:
        os.close(sandbox.pidfd)
        sandbox.pidfd = None


def _remove_group(cgroup: SandboxCgroup) -> bool:
    """Kill what is left in the group and remove it; whether it is gone (so was empty)."""
    cgroup.kill()
    try:
        cgroup.remove()
    except OSError as exc:
        log.warning("could not remove cgroup %s: %s", cgroup.dirs[0], exc)
        return False
    return True


def _zygote_command(rootfs: Rootfs) -> list[str] | None:
    """The zygote's command line, for an image whose entry point is the Python proxy."""
    if rootfs.command[-1:] != [PYTHON_PROXY] or not (rootfs.path / ZYGOTE[1:]).is_file():
        return None
    return [*rootfs.command[:-1], ZYGOTE]


async def _kept_stream(stream: asyncio.StreamReader, tail: bytearray) -> None:
    """Read ``stream`` to its end, keeping the last STDERR_KEPT bytes in ``tail``."""
    while chunk := await stream.read(65536):
        tail += chunk
        del tail[:-STDERR_KEPT]


async def _log_zygote(kind: str, process: asyncio.subprocess.Process) -> None:
    """A zygote writes only when something fails; its lines go to the invoker's log."""
    assert process.stderr is not None
    while line := await process.stderr.readline():
        log.warning("%s zygote: %s", kind, line.decode(errors="replace").rstrip())
    log.warning("the %s zygote exited with %s", kind, await process.wait())


def _open(opened: contextlib.ExitStack, path: str | Path) -> int:
    """A read-only descriptor for a sandbox to inherit, closed here once it has."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    opened.callback(os.close, fd)
    return fd


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SandboxUnavailable(
            f"{tool} is not installed (apt-get install bubblewrap util-linux): the sandbox "
            f"backend needs it")
    return path
