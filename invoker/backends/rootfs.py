"""Runtime images as read-only root filesystems for sandboxes: each image version (its
engine id) is unpacked once, from the locally built image (``docker export`` of a container
never started), into ``<root>/<id>``, and mounted read-only under every sandbox of it.

The image's config (environment, entrypoint and command, working directory) is kept beside
it, so starting a sandbox needs neither the engine nor a registry: the Docker engine is only
asked when an image version is seen first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import ImageNotFound, NotFound

from invoker.backends import ImageUnavailable

log = logging.getLogger(__name__)

CONFIG_FILE = "image-config.json"


@dataclass(frozen=True)
class Rootfs:
    image: str
    path: Path  # the unpacked root
    env: dict[str, str]
    command: list[str]
    workdir: str


def traversable(path: Path) -> None:
    """Sandboxes run as the container user and open their rootfs and proxy directory by path:
    every directory on the way must let others through (x), without listing (r)."""
    path.mkdir(parents=True, exist_ok=True)
    for part in [path, *path.parents]:
        mode = part.stat().st_mode
        if not mode & 0o001:
            os.chmod(part, (mode & 0o7777) | 0o011)


class RootfsCache:
    def __init__(self, root: Path, docker_url: str) -> None:
        self.root = root
        self._docker_url = docker_url
        self._known: dict[str, Rootfs] = {}  # image name -> its unpacked root
        self._locks: dict[str, asyncio.Lock] = {}
        traversable(root)

    def cached(self, image: str) -> Rootfs | None:
        return self._known.get(image)

    async def ensure(self, image: str) -> Rootfs:
        """The unpacked root of ``image``'s current version (unpacked now if it is new)."""
        known = self._known.get(image)
        if known is not None:
            return known
        async with self._locks.setdefault(image, asyncio.Lock()):
            if image not in self._known:
                self._known[image] = await asyncio.to_thread(self._unpack, image)
        return self._known[image]

    def forget(self, image: str) -> None:
        """Look the image up again next time (it may have been rebuilt)."""
        self._known.pop(image, None)

    def _unpack(self, image: str) -> Rootfs:
        api = docker.APIClient(base_url=self._docker_url, timeout=300)
        try:
            try:
                info = api.inspect_image(image)
            except ImageNotFound as exc:
                raise ImageUnavailable(image) from exc
            version = info["Id"].removeprefix("sha256:")[:24]
            target = self.root / version
            config = info.get("Config") or {}
            if not (target / CONFIG_FILE).exists():
                self._export(api, image, target, config)
            saved = json.loads((target / CONFIG_FILE).read_text())
            return Rootfs(image=image, path=target / "root", env=saved["env"],
                          command=saved["command"], workdir=saved["workdir"])
        finally:
            api.close()

    def _export(self, api: docker.APIClient, image: str, target: Path,
                config: dict[str, object]) -> None:
        staging = self.root / f".unpacking-{uuid.uuid4().hex[:8]}"
        (staging / "root").mkdir(parents=True)
        container = api.create_container(image, command=["/bin/true"], network_disabled=True)
        try:
            stream = api.export(container["Id"])
            tar = subprocess.Popen(["tar", "--numeric-owner", "-x", "-C", str(staging / "root")],
                                   stdin=subprocess.PIPE, stderr=subprocess.PIPE)
            assert tar.stdin is not None
            for chunk in stream:
                tar.stdin.write(chunk)
            tar.stdin.close()
            if tar.wait() != 0:
                raise RuntimeError(f"unpacking {image} failed: {tar.stderr.read().decode()}")
        finally:
            try:
                api.remove_container(container["Id"], force=True)
            except NotFound:
                pass
        # Mount points the sandbox binds over: the read-only root cannot grow them later.
        for point in ("ft", "tmp", "dev/shm", "proc"):
            (staging / "root" / point).mkdir(parents=True, exist_ok=True)
        env = dict(e.split("=", 1) for e in config.get("Env") or [] if "=" in e)  # type: ignore[union-attr]
        command = [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]  # type: ignore[misc]
        (staging / CONFIG_FILE).write_text(json.dumps({
            "image": image, "env": env, "command": command,
            "workdir": config.get("WorkingDir") or "/"}))
        traversable(staging / "root")
        try:
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)  # another invoker unpacked it first
        else:
            log.info("unpacked %s into %s", image, target)
