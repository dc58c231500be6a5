"""The Docker engine backend (docker-py). Every engine call runs in a dedicated thread pool:
docker-py is blocking, and the event loop must keep serving warm activations meanwhile.
No call is made on the warm path: warm activations only touch the proxy socket."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import re
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import LogConfig, Ulimit

from bus.config import Settings
from invoker.backends import ContainerHandle, ImageUnavailable
from invoker.backends.docker_watch import ContainerWatch
from runtimes.kinds import image_for

log = logging.getLogger(__name__)

LABEL = "funtainer.invoker"

# The proxy's socket closes the instant the kernel kills it, but the engine records the exit
# (and OOMKilled) a few ms later: how long to wait for that before reading the verdict.
EXIT_SETTLE_S = 2.0

_libc = ctypes.CDLL(None, use_errno=True)
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 0x2, 0x4, 0x8
_MNT_DETACH = 0x2
# A proxy directory holds a socket, the log directory and one activation's log file at a time.
_IO_DIR_INODES = 1024


def _mount_tmpfs(path: Path, size_mb: int, uid: int, gid: int) -> None:
    options = f"size={size_mb}m,nr_inodes={_IO_DIR_INODES},mode=0700,uid={uid},gid={gid}"
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    if _libc.mount(b"tmpfs", os.fsencode(path), b"tmpfs", flags, options.encode()) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(path))


def _unmount(path: Path) -> None:
    # Lazily: the engine may still hold the bind of a container it is tearing down.
    if _libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(path))


def _mount_points_under(root: Path) -> list[Path]:
    prefix = os.fsencode(root) + b"/"
    points = []
    with open("/proc/self/mounts", "rb") as mounts:
        for line in mounts:
            # Spaces and other specials in mount points are octal escapes (\040).
            point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), line.split()[1])
            if point.startswith(prefix):
                points.append(Path(os.fsdecode(point)))
    # Deepest first, so that nested mounts come off before their parents.
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


class DockerBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.io_root = settings.work_dir / settings.invoker_id
        self._api = docker.APIClient(base_url=settings.docker_url, timeout=120)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="docker")
        self._uid, self._gid = (int(x) for x in settings.container_user.split(":"))
        self._io_quota_mb = settings.container_io_quota_mb
        # Engine ids of the containers created and not yet destroyed.
        self._live: set[str] = set()
        self._watch = ContainerWatch(
            self._api, f"{LABEL}={settings.invoker_id}", known=self._live.__contains__,
            remove=self._force_remove)

    def watch(self, on_died: Callable[[str], None]) -> None:
        """Report (by engine id) each of our containers that dies without our asking."""
        self._watch.start(on_died)

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))

    def _container_name(self, pool_id: str) -> str:
        return f"ft_{self.settings.invoker_id}_{pool_id}"

    def _host_config(self, io_dir: Path, memory: int) -> dict[str, Any]:
        s = self.settings
        return self._api.create_host_config(
            binds={str(io_dir): {"bind": "/ft", "mode": "rw"}},
            network_mode=s.container_network,
            read_only=True,
            tmpfs={"/tmp": f"rw,size={s.container_tmpfs_mb}m,mode=1777"},
            # /dev/shm is the other writable tmpfs: sized here, not by the engine's default.
            shm_size=f"{s.container_tmpfs_mb}m",
            mem_limit=f"{memory}m",
            memswap_limit=f"{memory}m",
            pids_limit=s.container_pids_limit,
            ulimits=[Ulimit(name="nofile", soft=s.container_nofile, hard=s.container_nofile)],
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            # CPU share proportional to the memory slot, as OpenWhisk does.
            cpu_shares=max(1024 * memory // s.user_memory_mb, 2),
            nano_cpus=self._cpu_limit(memory),
            # A tiny init as PID 1 reaps the zombies an action's children leave behind.
            init=True,
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        )

    def _cpu_limit(self, memory: int) -> int | None:
        """The container's CPU cap in billionths of a CPU (None: no cap)."""
        fraction = self.settings.container_cpu_cap
        if fraction <= 0:
            return None
        host_cpus = os.cpu_count() or 1
        memory_share = memory / self.settings.user_memory_mb
        return int(host_cpus * min(max(memory_share, fraction), 1.0) * 1e9)

    def _prepare_io_dir(self, pool_id: str) -> Path:
        io_dir = self.io_root / pool_id
        _release_io_dir(io_dir)
        io_dir.mkdir(parents=True)
        self._limit_io_dir(io_dir)
        (io_dir / "logs").mkdir()
        for path in (io_dir, io_dir / "logs"):
            os.chown(path, self._uid, self._gid)
        return io_dir

    def _limit_io_dir(self, io_dir: Path) -> None:
        """The directory is writable from inside the container: on the host's disk an action
        could fill that disk for every tenant. A small tmpfs bounds it (and its pages count
        against the container's memory, as they are written by the container)."""
        if not self._io_quota_mb:
            return
        try:
            _mount_tmpfs(io_dir, self._io_quota_mb, self._uid, self._gid)
        except OSError as exc:
            log.warning("proxy directories are not size-limited (cannot mount a tmpfs: %s); "
                        "actions can fill the disk of %s", exc, self.io_root)
            self._io_quota_mb = 0

    async def create(self, pool_id: str, kind: str, memory: int) -> ContainerHandle:
        io_dir = self._prepare_io_dir(pool_id)
        name = self._container_name(pool_id)
        image = image_for(kind, self.settings.image_prefix)
        engine_id = ""
        try:
            created = await self._call(
                self._api.create_container,
                image,
                name=name,
                user=self.settings.container_user,
                environment={"__OW_API_HOST": self.settings.api_host, "FT_PROXY_DIR": "/ft"},
                labels={LABEL: self.settings.invoker_id, "funtainer.kind": kind},
                host_config=self._host_config(io_dir, memory),
            )
            engine_id = created["Id"]
            self._live.add(engine_id)
            await self._call(self._api.start, engine_id)
        except Exception as exc:
            self._live.discard(engine_id)
            await self._call(self._force_remove, name)
            await asyncio.to_thread(_release_io_dir, io_dir)
            if isinstance(exc, ImageNotFound):
                raise ImageUnavailable(image) from exc
            raise
        return ContainerHandle(pool_id=pool_id, name=name, engine_id=engine_id, io_dir=io_dir)

    def _force_remove(self, name_or_id: str) -> None:
        try:
            self._api.remove_container(name_or_id, force=True, v=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise

    async def destroy(self, handle: ContainerHandle) -> None:
        # Forgotten first: if the engine is away, the watch removes it once it is back.
        self._live.discard(handle.engine_id)
        try:
            await self._call(self._force_remove, handle.engine_id)
        finally:
            await asyncio.to_thread(_release_io_dir, handle.io_dir)

    async def was_oom_killed(self, handle: ContainerHandle) -> bool:
        try:
            return bool(await self._call(self._oom_killed, handle.engine_id))
        except (APIError, requests.exceptions.RequestException) as exc:
            # The engine itself is away (restarting): it did not kill this one for memory.
            log.warning("cannot ask the engine about %s: %s", handle.name, exc)
            return False

    def _oom_killed(self, engine_id: str) -> bool:
        try:
            # Asked right after the proxy's connection broke, the engine may still see the
            # container running and OOMKilled false: wait (briefly) until it has exited.
            self._api.wait(engine_id, timeout=EXIT_SETTLE_S, condition="not-running")
        except NotFound:
            return False
        except (APIError, requests.exceptions.RequestException):
            pass  # still running: the proxy broke its connection without dying
        try:
            info = self._api.inspect_container(engine_id)
        except NotFound:
            return False
        return bool(info.get("State", {}).get("OOMKilled"))

    async def remove_leftovers(self) -> int:
        removed = await self._call(self._remove_all)
        self.io_root.mkdir(parents=True, exist_ok=True)
        return removed

    def _remove_all(self) -> int:
        """Every container of this invoker and every proxy directory (and its tmpfs)."""
        leftovers = self._api.containers(
            all=True, filters={"label": f"{LABEL}={self.settings.invoker_id}"})
        for container in leftovers:
            self._force_remove(container["Id"])
        _release_io_dir(self.io_root)
        return len(leftovers)

    async def close(self) -> None:
        """The invoker destroyed its containers before this; one whose creation was still
        under way then (a stem cell, say) is removed here, with its mount: nothing of an
        invoker outlives it."""
        await self._watch.stop()
        await asyncio.to_thread(self._pool.shutdown, True)  # engine calls in flight first
        try:
            removed = await asyncio.to_thread(self._remove_all)
        except Exception:
            log.exception("could not remove what is left of invoker %s", self.settings.invoker_id)
        else:
            if removed:
                log.info("removed %d containers created while stopping", removed)
        self._api.close()


def _release_io_dir(path: Path) -> None:
    """Unmount the tmpfs of a proxy directory (or of every one under ``path``), then delete it."""
    for point in [*_mount_points_under(path), path]:
        if os.path.ismount(point):
            try:
                _unmount(point)
            except OSError as exc:
                log.warning("could not unmount %s: %s", point, exc)
    shutil.rmtree(path, ignore_errors=True)
