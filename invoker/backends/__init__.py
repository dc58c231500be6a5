"""Container backends: one small interface, one module per engine."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bus.config import Settings


@dataclass
class ContainerHandle:
    """A running runtime container, as the invoker reaches it: through a host directory
    bind-mounted into the container that holds the proxy's socket and its log files."""

    pool_id: str
    name: str
    engine_id: str
    io_dir: Path

    @property
    def socket_path(self) -> Path:
        return self.io_dir / "proxy.sock"

    def log_path(self, activation_id: str) -> Path:
        return self.io_dir / "logs" / f"{activation_id}.log"


class ImageUnavailable(LookupError):
    """The engine does not have the image (this platform never pulls: images are local)."""

    def __init__(self, image: str) -> None:
        super().__init__(image)
        self.image = image


class ContainerBackend(Protocol):
    async def create(self, pool_id: str, kind: str, memory: int) -> ContainerHandle:
        """Create and start a container for ``kind`` limited to ``memory`` MB. Returns once
        the engine started it (the caller waits for the proxy socket). Raises
        ``ImageUnavailable`` if the kind's image is not there."""

    async def destroy(self, handle: ContainerHandle) -> None:
        """Remove the container and its io directory. Never raises for a missing one."""

    async def was_oom_killed(self, handle: ContainerHandle) -> bool:
        """Whether the engine killed the container for exceeding its memory (failure path)."""

    async def remove_leftovers(self) -> int:
        """Remove containers a previous life of this invoker left behind; return how many."""

    def watch(self, on_died: Callable[[str], None]) -> None:
        """Report (by engine id) each container that dies without the invoker asking."""

    async def close(self) -> None: ...


# The limits every backend enforces, computed once for all of them.


def cpu_shares(settings: Settings, memory: int) -> int:
    """CPU share proportional to the memory slot, as OpenWhisk does (1024 = a whole budget)."""
    return max(1024 * memory // settings.user_memory_mb, 2)


def cpu_cap(settings: Settings, memory: int) -> float | None:
    """The most CPUs one container may use: ``container_cpu_cap`` of the host's, or its
    memory's part of them if that is more (None: no cap)."""
    fraction = settings.container_cpu_cap
    if fraction <= 0:
        return None
    memory_share = memory / settings.user_memory_mb
    return (os.cpu_count() or 1) * min(max(memory_share, fraction), 1.0)
