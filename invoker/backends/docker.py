"""The Docker engine backend (docker-py). Every engine call runs in a dedicated thread pool:
docker-py is blocking, and the event loop must keep serving warm activations meanwhile.
No call is made on the warm path: warm activations only touch the proxy socket."""

from __future__ import annotations

import asyncio
import logging
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
from invoker.backends import ContainerHandle, ImageUnavailable, cpu_cap, cpu_shares
from invoker.backends.docker_watch import ContainerWatch
from invoker.backends.io_dirs import IoDirs, release_io_dir
from runtimes.kinds import image_for
from runtimes.profiles import profile_env

log = logging.getLogger(__name__)

LABEL = "funtainer.invoker"

# The proxy's socket closes the instant the kernel kills it, but the engine records the exit
# (and OOMKilled) a few ms later: how long to wait for that before reading the verdict.
EXIT_SETTLE_S = 2.0
# Containers started and removed at once, at most. The engine does them one after another
# anyway, and with many starts and removals overlapping (a full pool replacing its
# containers) Docker 20.10 deadlocked here: a start's libnetwork-setkey hook and every later
# engine call waited for good (moby/moby#26251 is that family of hang).
ENGINE_CHANGES_AT_ONCE = 2

class DockerBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        uid, gid = (int(x) for x in settings.container_user.split(":"))
        self.io_dirs = IoDirs(settings.work_dir / settings.invoker_id, uid, gid,
                              settings.container_io_quota_mb)
        self._api = docker.APIClient(base_url=settings.docker_url, timeout=120)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="docker")
        self._changes = asyncio.Semaphore(ENGINE_CHANGES_AT_ONCE)
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
            cpu_shares=cpu_shares(s, memory),
            nano_cpus=None if (cap := cpu_cap(s, memory)) is None else int(cap * 1e9),
            # A tiny init as PID 1 reaps the zombies an action's children leave behind.
            init=True,
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        )

    async def create(self, pool_id: str, kind: str, memory: int) -> ContainerHandle:
        io_dir = self.io_dirs.prepare(pool_id)
        name = self._container_name(pool_id)
        image = image_for(kind, self.settings.image_prefix)
        try:
            async with self._changes:
                engine_id = await self._create_and_start(name, image, io_dir, kind, memory)
        except Exception as exc:
            await self._call(self._force_remove, name)
            await asyncio.to_thread(release_io_dir, io_dir)
            if isinstance(exc, ImageNotFound):
                raise ImageUnavailable(image) from exc
            raise
        return ContainerHandle(pool_id=pool_id, name=name, engine_id=engine_id, io_dir=io_dir)

    async def _create_and_start(self, name: str, image: str, io_dir: Path, kind: str,
                                memory: int) -> str:
        created = await self._call(
            self._api.create_container,
            image,
            name=name,
            user=self.settings.container_user,
            environment={**profile_env(kind, memory, cpu_cap(self.settings, memory)),
                         "__OW_API_HOST": self.settings.api_host, "FT_PROXY_DIR": "/ft"},
            labels={LABEL: self.settings.invoker_id, "funtainer.kind": kind},
            host_config=self._host_config(io_dir, memory),
        )
        engine_id = str(created["Id"])
        self._live.add(engine_id)
        try:
            await self._call(self._api.start, engine_id)
        except BaseException:
            self._live.discard(engine_id)
            raise
        return engine_id

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
            async with self._changes:
                await self._call(self._force_remove, handle.engine_id)
        finally:
            await asyncio.to_thread(release_io_dir, handle.io_dir)

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
        return int(await self._call(self._remove_all))

    def _remove_all(self) -> int:
        """Every container of this invoker and every proxy directory (and its tmpfs)."""
        leftovers = self._api.containers(
            all=True, filters={"label": f"{LABEL}={self.settings.invoker_id}"})
        for container in leftovers:
            self._force_remove(container["Id"])
        self.io_dirs.release_all()
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
