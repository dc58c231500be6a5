"""Where the CPU of one activation goes: a burst of non-blocking (or blocking) invokes of a warm
no-op action, with the CPU time of every process that takes part read from /proc and the
containers' cpuacct cgroups before and after. On a 2-core machine the sum bounds throughput:
2000 ms of CPU per second / (ms per activation) = activations per second at best.

    .venv/bin/python -m bench.cpu_budget [--invokes 3000] [--in-flight 32] [--blocking]
                                         [--profile DIR]   # py-spy profile of each process

With ``--profile`` each platform process is recorded by py-spy (``pip install py-spy`` into the
bench venv or anywhere on PATH) for the measured burst: collapsed stacks per process and
their hottest functions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import docker
import uvloop

from bench.cluster import BenchCluster, running_cluster
from bench.env import bench_python
from bench.suite import STEM_CELLS
from bench.through_gateway import async_burst
from cli.services import ensure_all
from invoker.backends.docker import LABEL

CPUACCT = Path("/sys/fs/cgroup/cpuacct/docker")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped children so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def pid_of(name: str) -> int | None:
    found = subprocess.run(["pgrep", "-o", "-x", name], capture_output=True, text=True)
    return int(found.stdout.split()[0]) if found.returncode == 0 else None


def containers_cpu_seconds(invoker_id: str) -> float:
    """CPU of the invoker's containers (cgroup v1 cpuacct); containers removed meanwhile are
    not counted, so the burst keeps its warm ones."""
    engine = docker.APIClient()
    try:
        ids = [c["Id"] for c in engine.containers(filters={"label": f"{LABEL}={invoker_id}"})]
    finally:
        engine.close()
    total = 0
    for engine_id in ids:
        usage = CPUACCT / engine_id / "cpuacct.usage"
        if usage.exists():
            total += int(usage.read_text())
    return total / 1e9


def py_spy() -> str | None:
    beside = bench_python().parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_recorders(pids: dict[str, int], profile: Path) -> list[subprocess.Popen[bytes]]:
    spy = py_spy()
    if spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    profile.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([spy, "record", "-p", str(pid), "-o", str(profile / f"{role}.txt"),
                              "--format", "raw", "--rate", "250", "--nonblocking"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for role, pid in pids.items()]


def stop_recorders(recorders: list[subprocess.Popen[bytes]]) -> None:
    for recorder in recorders:
        recorder.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    for recorder in recorders:
        recorder.wait(60)


def hottest(collapsed: Path, top: int = 25) -> str:
    """The functions the process spent most samples in (inclusive), from py-spy's collapsed
    stacks: ``frame;frame;frame count`` per line."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # py-spy ends a frame's name with nothing at times
            continue
        samples = int(count)
        total += samples
        for frame in set(stack.split(";")):
            inclusive[frame] = inclusive.get(frame, 0) + samples
    ranked = sorted(inclusive.items(), key=lambda item: -item[1])[:top]
    return f"{total} samples\n" + "\n".join(
        f"  {100 * n / max(total, 1):5.1f}%  {frame}" for frame, n in ranked)


class Meter:
    """CPU seconds per role, read together."""

    def __init__(self, bc: BenchCluster) -> None:
        self.bc = bc
        self.pids = bc.pids() | {"bench client": os.getpid()}
        for role, binary in (("RabbitMQ", "beam.smp"), ("Redis", "redis-server"),
                             ("dockerd", "dockerd")):
            pid = pid_of(binary)
            if pid is not None:
                self.pids[role] = pid

    def read(self) -> dict[str, float]:
        now = {role: cpu_seconds(pid) for role, pid in self.pids.items()}
        now["containers"] = containers_cpu_seconds(self.bc.invoker_id)
        return now


async def blocking_burst(bc: BenchCluster, name: str, n: int, in_flight: int) -> dict[str, Any]:
    gate = asyncio.Semaphore(in_flight)
    errors = 0

    async def one() -> None:
        nonlocal errors
        async with gate:
            try:
                await bc.invoke_blocking(name)
            except RuntimeError:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - started
    return {"invokes": n, "errors": errors, "elapsed_s": round(elapsed, 3),
            "per_s": round((n - errors) / elapsed, 1)}


async def measure(
    n: int, in_flight: int, blocking: bool, profile: Path | None
) -> tuple[dict[str, Any], dict[str, float]]:
    """The burst's outcome and the CPU seconds each role spent on it."""
    async with running_cluster("ft-cpu", stem_cells=STEM_CELLS) as bc:
        name = f"cpu-{time.strftime('%H%M%S')}"
        await bc.create_action(name)
        # Warm as many containers as the burst will use.
        await async_burst(bc, [name], max(4 * in_flight, n // 5), in_flight, 120)
        meter = Meter(bc)
        recorders: list[subprocess.Popen[bytes]] = []
        if profile is not None:
            recorders = await asyncio.to_thread(start_recorders, bc.pids(), profile)
            await asyncio.sleep(1.0)
        before = await asyncio.to_thread(meter.read)
        if blocking:
            result = await blocking_burst(bc, name, n, in_flight)
        else:
            result = await async_burst(bc, [name], n, in_flight, 300)
        after = await asyncio.to_thread(meter.read)
        await asyncio.to_thread(stop_recorders, recorders)
    return result, {role: after[role] - before[role] for role in after}


def report(n: int, in_flight: int, blocking: bool, profile: Path | None,
           result: dict[str, Any], spent: dict[str, float]) -> None:
    done = n - int(result["errors"])
    print(f"\n{'blocking' if blocking else 'non-blocking'} invokes: {n}, in flight "
          f"{in_flight}, errors {result['errors']}, {result['per_s']} activations/s")
    print(f"{'process':<16}{'CPU ms per activation':>24}")
    total = 0.0
    for role, seconds in spent.items():
        ms = seconds * 1000 / max(done, 1)
        total += ms
        print(f"{role:<16}{ms:>24.3f}")
    print(f"{'total':<16}{total:>24.3f}")
    cores = os.cpu_count() or 1
    print(f"ceiling on {cores} cores: {cores * 1000 / total:.0f} activations/s")
    if profile is not None:
        for path in sorted(profile.glob("*.txt")):
            print(f"\n{path.stem}: {hottest(path)}")
        print(f"\ncollapsed stacks (flamegraph.pl, speedscope): {profile}/*.txt")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_budget",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--invokes", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--blocking", action="store_true")
    parser.add_argument("--profile", type=Path, metavar="DIR")
    args = parser.parse_args()
    ensure_all(lambda m: print(f".. {m}"))
    result, spent = uvloop.run(measure(args.invokes, args.in_flight, args.blocking, args.profile))
    report(args.invokes, args.in_flight, args.blocking, args.profile, result, spent)


if __name__ == "__main__":
    main()
