"""The Docker engine backend (docker-py). Every engine call runs in a dedicated thread pool:
docker-py is blocking, and the event loop must keep serving warm activations meanwhile.
No call is made on the warm path: warm activations only touch the proxy socket."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import docker
from docker.errors import APIError, NotFound
from docker.types import LogConfig, Ulimit

from bus.config import Settings
from invoker.backends import ContainerHandle
from runtimes.kinds import image_for

log = logging.getLogger(__name__)

LABEL = "funtainer.invoker"


class DockerBackend:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.io_root = settings.work_dir / settings.invoker_id
        self._api = docker.APIClient(base_url=settings.docker_url, timeout=120)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="docker")
        self._uid, self._gid = (int(x) for x in settings.container_user.split(":"))

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
            mem_limit=f"{memory}m",
            memswap_limit=f"{memory}m",
            pids_limit=s.container_pids_limit,
            ulimits=[Ulimit(name="nofile", soft=s.container_nofile, hard=s.container_nofile)],
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            # CPU share proportional to the memory slot, as OpenWhisk does.
            cpu_shares=max(1024 * memory // s.user_memory_mb, 2),
            # A tiny init as PID 1 reaps the zombies an action's children leave behind.
            init=True,
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        )

    def _prepare_io_dir(self, pool_id: str) -> Path:
        io_dir = self.io_root / pool_id
        shutil.rmtree(io_dir, ignore_errors=True)
        (io_dir / "logs").mkdir(parents=True)
        for path in (io_dir, io_dir / "logs"):
            os.chown(path, self._uid, self._gid)
        return io_dir

    async def create(self, pool_id: str, kind: str, memory: int) -> ContainerHandle:
        io_dir = self._prepare_io_dir(pool_id)
        name = self._container_name(pool_id)
        try:
            created = await self._call(
                self._api.create_container,
                image_for(kind, self.settings.image_prefix),
                name=name,
                user=self.settings.container_user,
                environment={"__OW_API_HOST": self.settings.api_host, "FT_PROXY_DIR": "/ft"},
                labels={LABEL: self.settings.invoker_id, "funtainer.kind": kind},
                host_config=self._host_config(io_dir, memory),
            )
            await self._call(self._api.start, created["Id"])
        except Exception:
            await self._call(self._force_remove, name)
            shutil.rmtree(io_dir, ignore_errors=True)
            raise
        return ContainerHandle(pool_id=pool_id, name=name, engine_id=created["Id"], io_dir=io_dir)

    def _force_remove(self, name_or_id: str) -> None:
        try:
            self._api.remove_container(name_or_id, force=True, v=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: removal already in progress
                raise

    async def destroy(self, handle: ContainerHandle) -> None:
        try:
            await self._call(self._force_remove, handle.engine_id)
        finally:
            await asyncio.to_thread(shutil.rmtree, handle.io_dir, True)

    async def was_oom_killed(self, handle: ContainerHandle) -> bool:
        try:
            info = await self._call(self._api.inspect_container, handle.engine_id)
        except NotFound:
            return False
        return bool(info.get("State", {}).get("OOMKilled"))

    async def remove_leftovers(self) -> int:
        leftovers = await self._call(
            self._api.containers, all=True, filters={"label": f"{LABEL}={self.settings.invoker_id}"}
        )
        await asyncio.gather(*(self._call(self._force_remove, c["Id"]) for c in leftovers))
        await asyncio.to_thread(shutil.rmtree, self.io_root, True)
        self.io_root.mkdir(parents=True, exist_ok=True)
        return len(leftovers)

    async def close(self) -> None:
        self._pool.shutdown(wait=False)
        self._api.close()
