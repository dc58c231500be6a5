"""Control groups for sandboxes: the same limits the Docker backend asks the engine for
(memory = memory + swap, pids, CPU share and cap), written straight to the kernel, on cgroup
v1 (one hierarchy per controller) and v2 (one unified hierarchy).

Every sandbox of an invoker gets ``funtainer/<invoker id>/<name>`` in each hierarchy. A
process joins by writing its pid to each ``cgroup.procs`` before it execs the sandbox, so all
it forks is counted from the first instruction. Plain file writes: microseconds, so they are
made on the event loop; but joining a group on cgroup v1 waits for an RCU grace period
(``cgroup_threadgroup_rwsem``), 6-22 ms here, which is why zygotes keep spare sandboxes that
joined theirs ahead of time (``zygote.py``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PERIOD_US = 100_000
V1_CONTROLLERS = ("memory", "pids", "cpu")


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    pids: int
    cpu_shares: int  # Docker's scale (1024 = one default share)
    cpu_quota: float | None  # CPUs, e.g. 0.5; None: no cap


class CgroupError(OSError):
    pass


def _write(path: Path, value: str | int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def _read_key(path: Path, key: str) -> int:
    """``key value`` lines (memory.oom_control, memory.events)."""
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return 0


def unified() -> bool:
    return (ROOT / "cgroup.controllers").exists()


class SandboxCgroup:
    """One sandbox's group(s). ``procs_files``: what its first process writes its pid to."""

    def __init__(self, base: str, name: str) -> None:
        self.v2 = unified()
        if self.v2:
            self.dirs = [ROOT / base / name]
        else:
            self.dirs = [ROOT / c / base / name for c in V1_CONTROLLERS]
        self.base = base
        self.limits: Limits | None = None  # as last written

    @property
    def procs_files(self) -> list[Path]:
        return [d / "cgroup.procs" for d in self.dirs]

    def create(self, limits: Limits | None) -> None:
        """The group(s), with ``limits`` (None: none yet; a spare sandbox's, whose limits
        come with the request that takes it, through ``apply``)."""
        try:
            if self.v2:
                self._create_v2()
            else:
                for d in self.dirs:
                    d.mkdir(parents=True, exist_ok=True)
            if limits is not None:
                self.apply(limits)
        except OSError as exc:
            self.remove()
            raise CgroupError(exc.errno, f"cannot set up cgroup {self.dirs[0]}: {exc}") from exc

    def rename(self, name: str) -> None:
        """Name the group(s) after the sandbox that took them (a spare's), where the kernel
        allows it: cgroup v1 does, the unified hierarchy keeps the name it was made with."""
        if self.v2:
            return
        for i, old in enumerate(self.dirs):
            new = old.with_name(name)
            os.rename(old, new)
            self.dirs[i] = new

    def apply(self, limits: Limits) -> None:
        """Set the group's limits: all of them on a new group, only those that differ on one
        that had a sandbox before (a group is reused: ``SandboxBackend``)."""
        if self.v2:
            self._apply_v2(limits, self.limits)
        else:
            self._apply_v1(limits, self.limits)
        self.limits = limits

    def _apply_v1(self, limits: Limits, before: Limits | None) -> None:
        memory, pids, cpu = self.dirs
        if before is None or limits.memory_mb != before.memory_mb:
            limit = limits.memory_mb * 1024 * 1024
            # memory + swap is never below the memory limit: raised first, lowered last. It
            # is absent when the kernel has swap accounting off (then there is no swap to
            # use past the limit anyway).
            memsw = memory / "memory.memsw.limit_in_bytes"
            memsw_too = memsw.exists()
            raising = before is not None and limits.memory_mb > before.memory_mb
            if raising and memsw_too:
                _write(memsw, limit)
            _write(memory / "memory.limit_in_bytes", limit)
            if memsw_too and not raising:
                _write(memsw, limit)
        if before is None:
            _write(memory / "memory.swappiness", 0)
            _write(cpu / "cpu.cfs_period_us", PERIOD_US)
        if before is None or limits.pids != before.pids:
            _write(pids / "pids.max", limits.pids)
        if before is None or limits.cpu_shares != before.cpu_shares:
            _write(cpu / "cpu.shares", max(2, limits.cpu_shares))
        if before is None or limits.cpu_quota != before.cpu_quota:
            _write(cpu / "cpu.cfs_quota_us", _quota_us(limits.cpu_quota))

    def _create_v2(self) -> None:
        (group,) = self.dirs
        # Controllers must be enabled on every ancestor's subtree for the leaf to have them.
        path = ROOT
        for part in Path(self.base).parts:
            with contextlib.suppress(OSError):
                _write(path / "cgroup.subtree_control", "+memory +pids +cpu")
            path = path / part
            path.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            _write(path / "cgroup.subtree_control", "+memory +pids +cpu")
        group.mkdir(exist_ok=True)

    def _apply_v2(self, limits: Limits, before: Limits | None) -> None:
        (group,) = self.dirs
        if before is None or limits.memory_mb != before.memory_mb:
            _write(group / "memory.max", limits.memory_mb * 1024 * 1024)
        if before is None:
            _write(group / "memory.swap.max", 0)
        if before is None or limits.pids != before.pids:
            _write(group / "pids.max", limits.pids)
        if before is None or limits.cpu_shares != before.cpu_shares:
            # Docker's conversion of cpu-shares (2..262144) to cpu.weight (1..10000).
            shares = max(2, limits.cpu_shares)
            _write(group / "cpu.weight", 1 + ((shares - 2) * 9999) // 262142)
        if before is None or limits.cpu_quota != before.cpu_quota:
            quota = _quota_us(limits.cpu_quota)
            _write(group / "cpu.max", f"{'max' if quota < 0 else quota} {PERIOD_US}")

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this group for its memory limit."""
        if self.v2:
            return _read_key(self.dirs[0] / "memory.events", "oom_kill") > 0
        return _read_key(self.dirs[0] / "memory.oom_control", "oom_kill") > 0

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(p) for p in self.procs_files[0].read_text().split()]
        return []

    def signal_kill(self) -> bool:
        """SIGKILL everything in the group once; whether it had anyone. v2 does it in one
        write; on v1 a process forked meanwhile is missed (a sandbox's pid 1 is among those
        killed, and the kernel takes the rest of its pid namespace with it)."""
        if self.v2 and (self.dirs[0] / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                _write(self.dirs[0] / "cgroup.kill", 1)
            return bool(self.pids())
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return bool(pids)

    def kill(self) -> None:
        """SIGKILL everything in the group until it is empty (the pids limit bounds how much
        a fork loop can add meanwhile)."""
        for _ in range(100):
            if not self.signal_kill():
                return
            time.sleep(0.001)

    def remove(self) -> None:
        """Remove the (empty) group; waits briefly for killed processes to leave it, and
        raises if some are still there."""
        for d in self.dirs:
            for _ in range(200):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    time.sleep(0.005)
            else:
                raise CgroupError(errno.EBUSY, f"cgroup {d} still has processes")


def _quota_us(cpus: float | None) -> int:
    """A CPU cap as a quota per period; -1: none."""
    return -1 if cpus is None else max(1000, int(cpus * PERIOD_US))


def remove_all(base: str) -> int:
    """Kill and remove every sandbox group under ``base``, and ``base`` itself (made again
    with the next group); how many groups there were."""
    roots = [ROOT / base] if unified() else [ROOT / c / base for c in V1_CONTROLLERS]
    names = {d.name for r in roots if r.is_dir() for d in r.iterdir() if d.is_dir()}
    for name in names:
        group = SandboxCgroup(base, name)
        group.kill()
        with contextlib.suppress(OSError):
            group.remove()
    for root in roots:
        with contextlib.suppress(OSError):  # absent, or a group was left
            root.rmdir()
    return len(names)
