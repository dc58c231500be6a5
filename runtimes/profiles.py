"""Runtime profiles: what the platform, not the function, knows about running a kind. A
function declares only its code and its kind; the profile turns the action's limits into the
runtime's own settings when its container starts (heap size from the memory limit, thread
pools from the CPU share), so a function never carries them and a runtime upgrade changes
them for every function at once.

A profile is a function ``(memory MB, CPUs or None) -> environment``. To add a kind: give its
family (``runtimes/kinds.py``) an entry in ``PROFILES``; a family without one gets only the
thread settings every runtime understands.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from runtimes.kinds import RUNTIMES

Profile = Callable[[int, float | None], dict[str, str]]

# What V8 may use for its old generation, of the container's memory: the rest is its young
# generation, code, buffers outside the heap and the runtime itself.
NODE_HEAP_SHARE = 0.75


def threads(cpus: float | None) -> int:
    """Worker threads worth running on ``cpus`` CPUs (at least one; two if uncapped)."""
    return 2 if cpus is None else max(1, math.ceil(cpus))


def common(memory: int, cpus: float | None) -> dict[str, str]:
    """Native math libraries size their pools from the host's cores, not the container's
    share: on a 64-core host a 0.25-CPU action would start 64 threads."""
    n = str(threads(cpus))
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n,
            "NUMEXPR_MAX_THREADS": n}


def python(memory: int, cpus: float | None) -> dict[str, str]:
    # glibc makes an arena per thread up to 8 per core: in a small memory limit those
    # arenas' slack is what an action runs out of first.
    return {**common(memory, cpus), "MALLOC_ARENA_MAX": "2",
            "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def nodejs(memory: int, cpus: float | None) -> dict[str, str]:
    heap = max(16, int(memory * NODE_HEAP_SHARE))
    return {**common(memory, cpus), "NODE_OPTIONS": f"--max-old-space-size={heap}",
            "UV_THREADPOOL_SIZE": str(max(2, threads(cpus)))}


PROFILES: dict[str, Profile] = {"python": python, "nodejs": nodejs}


def profile_env(kind: str, memory: int, cpus: float | None) -> dict[str, str]:
    """The environment a container of ``kind`` starts with under these limits (blackbox
    images: only the common thread settings, their runtime is unknown)."""
    runtime = RUNTIMES.get(kind)
    profile = PROFILES.get(runtime.family, common) if runtime is not None else common
    return profile(memory, cpus)


def describe(kind: str, memory: int = 256, cpus: float | None = 0.5) -> str:
    """One line for `ft runtimes list`: the settings at the given limits."""
    env = profile_env(kind, memory, cpus)
    return " ".join(f"{k}={v}" for k, v in sorted(env.items()))
