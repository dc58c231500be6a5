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
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bus.config import Settings
from invoker.backends import ContainerHandle, cpu_cap, cpu_shares
from invoker.backends.cgroups import Limits, SandboxCgroup, remove_all
from invoker.backends.io_dirs import IoDirs, release_io_dir
from invoker.backends.rootfs import Rootfs, RootfsCache, traversable
from invoker.backends.seccomp import write_program
from runtimes.kinds import image_for
from runtimes.profiles import profile_env

log = logging.getLogger(__name__)

STDERR_KEPT = 4096  # the end of a sandbox's own stderr, logged if it dies on its own
KILL_WAIT_S = 5.0
# sh: join every cgroup given before "--" (so all the sandbox forks is counted from the first
# instruction), set the open-files limit, then become the rest of the command line.
_JOIN = ('while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; '
         'ulimit -n {nofile} || exit 125; exec "$@"')


class SandboxUnavailable(RuntimeError):
    pass


@dataclass
class Sandbox:
    handle: ContainerHandle
    process: asyncio.subprocess.Process
    cgroup: SandboxCgroup
    stderr_tail: bytearray = field(default_factory=bytearray)
    exited: asyncio.Event = field(default_factory=asyncio.Event)


class SandboxBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._tools = {tool: _require(tool) for tool in ("sh", "setpriv", "bwrap")}
        self._uid, self._gid = (int(x) for x in settings.container_user.split(":"))
        root = settings.sandbox_dir
        self.rootfs = RootfsCache(root / "rootfs", settings.docker_url)
        io_root = root / "io" / settings.invoker_id
        traversable(io_root)
        self.io_dirs = IoDirs(io_root, self._uid, self._gid, settings.container_io_quota_mb)
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
        self._on_died: Callable[[str], None] | None = None
        self._waiters: set[asyncio.Task[None]] = set()

    def watch(self, on_died: Callable[[str], None]) -> None:
        self._on_died = on_died

    def _name(self, pool_id: str) -> str:
        return f"ft_{self.settings.invoker_id}_{pool_id}"

    def _limits(self, memory: int) -> Limits:
        s = self.settings
        return Limits(memory_mb=memory, pids=s.container_pids_limit,
                      cpu_shares=cpu_shares(s, memory), cpu_quota=cpu_cap(s, memory))

    def _command(self, pool_id: str, rootfs: Rootfs, io_dir: Path, cgroup: SandboxCgroup,
                 seccomp_fd: int) -> list[str]:
        s, tmpfs = self.settings, str(self.settings.container_tmpfs_mb * 1024 * 1024)
        uid, gid = str(self._uid), str(self._gid)
        return [
            self._tools["sh"], "-c", _JOIN.format(nofile=s.container_nofile), "sh",
            *map(str, cgroup.procs_files), "--",
            self._tools["setpriv"], "--reuid", uid, "--regid", gid, "--clear-groups",
            self._tools["bwrap"],
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-net", "--unshare-cgroup-try", "--disable-userns",
            # Its name as its host name (unique across invokers), as Docker names a
            # container's host by its id.
            "--uid", uid, "--gid", gid, "--hostname", self._name(pool_id),
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--ro-bind", str(rootfs.path), "/",
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--size", tmpfs, "--tmpfs", "/tmp",
            "--perms", "1777", "--size", tmpfs, "--tmpfs", "/dev/shm",
            # bubblewrap's /dev is a tmpfs its user owns: read-only, as Docker's is to uid
            # 1000 (not recursive: /dev/shm below stays writable).
            "--remount-ro", "/dev",
            "--bind", str(io_dir), "/ft",
            "--chdir", rootfs.workdir,
            "--seccomp", str(seccomp_fd),
            "--", *rootfs.command,
        ]

    async def create(self, pool_id: str, kind: str, memory: int) -> ContainerHandle:
        rootfs = await self.rootfs.ensure(image_for(kind, self.settings.image_prefix))
        name = self._name(pool_id)
        io_dir = self.io_dirs.prepare(pool_id)
        cgroup = SandboxCgroup(self._cgroup_base, pool_id)
        try:
            cgroup.create(self._limits(memory))
            env = {**rootfs.env, **profile_env(kind, memory, cpu_cap(self.settings, memory)),
                   "__OW_API_HOST": self.settings.api_host, "FT_PROXY_DIR": "/ft"}
            with contextlib.ExitStack() as opened:
                seccomp_fd = _open(opened, self._seccomp)
                # Its own open file description of the lifeline's read end: flags set on
                # it inside (Node makes what it watches non-blocking) stay with this sandbox.
                lifeline = _open(opened, f"/proc/self/fd/{self._lifeline}")
                env["FT_LIFELINE_FD"] = str(lifeline)
                process = await asyncio.create_subprocess_exec(
                    *self._command(pool_id, rootfs, io_dir, cgroup, seccomp_fd), env=env,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE, pass_fds=[seccomp_fd, lifeline],
                    start_new_session=True)
        except BaseException:
            await asyncio.to_thread(_remove, cgroup, io_dir)
            raise
        handle = ContainerHandle(pool_id=pool_id, name=name, engine_id=name, io_dir=io_dir)
        sandbox = Sandbox(handle, process, cgroup)
        self._live[name] = sandbox
        task = asyncio.create_task(self._follow(sandbox))
        self._waiters.add(task)
        task.add_done_callback(self._waiters.discard)
        return handle

    async def _follow(self, sandbox: Sandbox) -> None:
        """Keep the end of its stderr; when it exits unasked, say so and report it died."""
        stream = sandbox.process.stderr
        assert stream is not None
        while chunk := await stream.read(65536):
            sandbox.stderr_tail += chunk
            del sandbox.stderr_tail[:-STDERR_KEPT]
        code = await sandbox.process.wait()
        sandbox.exited.set()
        if self._live.get(sandbox.handle.engine_id) is sandbox and self._on_died is not None:
            log.warning("sandbox %s exited with %s: %s", sandbox.handle.name, code,
                        sandbox.stderr_tail.decode(errors="replace").strip()[-500:])
            self._on_died(sandbox.handle.engine_id)

    async def destroy(self, handle: ContainerHandle) -> None:
        sandbox = self._live.pop(handle.engine_id, None)
        if sandbox is None:
            await asyncio.to_thread(release_io_dir, handle.io_dir)
            return
        await asyncio.to_thread(sandbox.cgroup.kill)
        with contextlib.suppress(ProcessLookupError):
            sandbox.process.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(KILL_WAIT_S):
                await sandbox.exited.wait()
        await asyncio.to_thread(_remove, sandbox.cgroup, handle.io_dir)

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
        removed = await asyncio.to_thread(remove_all, self._cgroup_base)
        await asyncio.to_thread(self.io_dirs.release_all)
        return removed

    async def close(self) -> None:
        for name in list(self._live):
            await self.destroy(self._live[name].handle)
        for task in list(self._waiters):
            task.cancel()
        removed = await self.remove_leftovers()
        if removed:
            log.info("removed %d sandboxes created while stopping", removed)
        os.close(self._lifeline_held)
        os.close(self._lifeline)


def _remove(cgroup: SandboxCgroup, io_dir: Path) -> None:
    cgroup.kill()
    try:
        cgroup.remove()
    except OSError as exc:
        log.warning("could not remove cgroup %s: %s", cgroup.dirs[0], exc)
    release_io_dir(io_dir)


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
