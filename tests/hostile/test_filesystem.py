"""Writing where an action may not, filling where it may (/tmp, /dev/shm, the proxy directory
shared with the host), and planting files the invoker will read."""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

from bus.config import Settings
from tests.hostile.harness import (
    SETTLE_S,
    Engine,
    NeighbourLoad,
    Tenant,
    Watch,
    result_of,
    succeeded,
    under_attack,
    unique,
)

MB = 1024 * 1024

ROOT_FS = r'''
import errno, os

DIRS = ["/", "/etc", "/usr/bin", "/usr/lib", "/ft-proxy", "/root", "/var/tmp", "/var/lib",
        "/home", "/opt", "/srv", "/sys/fs/cgroup", "/proc/sys/kernel", "/dev"]
FILES = ["/etc/passwd", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname",
         "/ft-proxy/proxy.py", "/usr/bin/python3", "/usr/sbin/docker-init",
         "/proc/sys/kernel/hostname", "/proc/sysrq-trigger",
         "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max"]

def attempt(call):
    try:
        call()
        return "succeeded"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))

def main(args):
    out = {}
    for d in filter(os.path.isdir, DIRS):
        out[f"create in {d}"] = attempt(lambda: open(os.path.join(d, "pwned"), "x").close())
        out[f"mkdir in {d}"] = attempt(lambda: os.mkdir(os.path.join(d, "pwned.d")))
        out[f"symlink in {d}"] = attempt(lambda: os.symlink("/tmp", os.path.join(d, "pwned.l")))
    for f in filter(os.path.exists, FILES):
        out[f"append to {f}"] = attempt(lambda: open(f, "a").close())
        out[f"chmod {f}"] = attempt(lambda: os.chmod(f, 0o777))
        out[f"rename {f}"] = attempt(lambda: os.rename(f, f + ".moved"))
        out[f"unlink {f}"] = attempt(lambda: os.unlink(f))
        out[f"utime {f}"] = attempt(lambda: os.utime(f, (0, 0)))
    return {"host": os.uname().nodename, "attempts": out}
'''

FILL = r'''
import errno, os, shutil

def fill(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    chunk, written = b"\0" * (1 << 20), 0
    try:
        while True:
            written += os.write(fd, chunk)
    except OSError as exc:
        return [written, errno.errorcode.get(exc.errno, str(exc))]
    finally:
        os.close(fd)

def many_files(folder):
    count = 0
    try:
        while True:
            open(os.path.join(folder, f"f{count}"), "x").close()
            count += 1
    except OSError as exc:
        return [count, errno.errorcode.get(exc.errno, str(exc))]

def main(args):
    out = {"host": os.uname().nodename,
           "tmp": sorted(os.listdir("/tmp")), "shm": sorted(os.listdir("/dev/shm"))}
    for where in args.get("fill", []):
        out[where] = fill(os.path.join(where, f"fill-{args['marker']}"))
    if args.get("files"):
        os.mkdir(f"/ft/{args['marker']}")
        out["files"] = many_files(f"/ft/{args['marker']}")
    if args.get("clean"):
        for where in args["fill"]:
            os.unlink(os.path.join(where, f"fill-{args['marker']}"))
        if args.get("files"):
            shutil.rmtree(f"/ft/{args['marker']}")
    if args.get("crash"):
        os._exit(1)
    return out
'''

# The invoker reads FT_PROXY_DIR/logs/<activation id>.log after /run. The action knows its
# activation id and prints nothing, so the proxy writes no file of its own: whatever the
# action planted there is what the invoker finds.
PLANT = r'''
import os

def main(args):
    aid = os.environ["__OW_ACTIVATION_ID"]
    path = f"/ft/logs/{aid}.log"
    trick = args["trick"]
    try:
        if trick == "symlink":
            os.symlink(args["target"], path)
        elif trick == "fifo":
            os.mkfifo(path)
        elif trick == "sparse":
            with open(path, "wb") as f:
                f.truncate(1 << 40)
        elif trick == "symlinked-dir":
            os.rename("/ft/logs", "/ft/logs.old")
            os.symlink(args["target"], "/ft/logs")
    except OSError as exc:
        return {"trick": trick, "refused": str(exc)}
    return {"trick": trick}
'''


async def test_the_root_filesystem_is_read_only(
    attacker: Tenant, neighbour: NeighbourLoad, engine: Engine
) -> None:
    """Every write outside /tmp, /dev/shm and /ft fails inside the action (EROFS, EACCES or
    EPERM, which the action reports), and neither the container's layer nor the image
    changes."""
    name = unique("rootfs")
    await attacker.create(name, ROOT_FS)
    neighbour_host = (await neighbour.next_calls(1))[0].host
    image_before = await asyncio.to_thread(engine.image_id, "funtainer/python:3.11")
    attempts: dict[str, str] = {}

    hosts: set[str] = set()

    async def scribble(watch: Watch) -> None:
        while await watch.again():
            record = await attacker.invoke(name)
            assert succeeded(record), record["response"]
            found = result_of(record)
            hosts.add(found["host"])
            attempts.update(found["attempts"])
            for what, outcome in found["attempts"].items():
                # /proc and /sys make some of these ENOENT rather than a permission error.
                virtual = what.split()[-1].startswith(("/proc", "/sys"))
                refused = ("EROFS", "EACCES", "EPERM") + (("ENOENT",) if virtual else ())
                watch.held(outcome in refused, f"{what}: {outcome}")

    async def layers_unchanged(watch: Watch) -> None:
        # The engine itself adds mount points to every container's layer (/ft, docker-init):
        # an untouched container of the same image and settings, the neighbour's, shows them.
        # (Asked after the neighbour's window: a diff costs the engine a walk of the layer.)
        untouched = await asyncio.to_thread(engine.layer_changes, neighbour_host)
        for host in hosts:
            changes = await asyncio.to_thread(engine.layer_changes, host)
            watch.held(changes == untouched, f"the layer changed: {changes} vs {untouched}")

    await under_attack(neighbour, "root-filesystem", scribble, aftermath=layers_unchanged)
    image_after = await asyncio.to_thread(engine.image_id, "funtainer/python:3.11")
    assert image_after == image_before
    outcomes = sorted(set(attempts.values()))
    print(f"root filesystem: {len(attempts)} writes tried, outcomes {outcomes}")


async def test_filling_tmp(
    attacker: Tenant, neighbour: NeighbourLoad, settings: Settings
) -> None:
    """/tmp and /dev/shm are tmpfs of 64 MB each: writing past that is ENOSPC.

    /tmp is *not* wiped between activations of the same action in the same container: as in
    OpenWhisk, a warm container is the same action's to keep, and actions use /tmp as a cache
    on purpose; wiping it would cost every warm activation a walk of /tmp. So the next
    activation of the same action in that container sees what the last one left (asserted
    below), as it sees its module globals. No other action and no other namespace ever runs
    in that container. A container whose activation failed with a developer error (here: the
    process exited) is destroyed, so the next activation starts in a fresh container with an
    empty /tmp."""
    name, bystander = unique("filltmp"), unique("bystander")
    await attacker.create(name, FILL)
    await attacker.create(bystander, FILL)
    cap = settings.container_tmpfs_mb * MB

    async def fill(watch: Watch) -> None:
        marker = secrets.token_hex(4)
        file = f"fill-{marker}"
        record = await attacker.invoke(name, {"fill": ["/tmp", "/dev/shm"], "marker": marker})
        assert succeeded(record), record["response"]
        filled = result_of(record)
        host = filled["host"]
        for where in ("/tmp", "/dev/shm"):
            written, error = filled[where]
            watch.held(error == "ENOSPC" and written <= cap, f"{where}: {written} B, {error}")
        await asyncio.sleep(SETTLE_S)
        warm = result_of(await attacker.invoke(name, {"marker": marker}))
        if warm["host"] == host:  # documented: the same action's next warm activation
            assert file in warm["tmp"] and file in warm["shm"], warm
        else:
            print("fill-tmp: the same action's next activation was not warm; not checked")
        other = result_of(await attacker.invoke(bystander, {"marker": marker}))
        watch.held(other["host"] != host, "another action ran in the filled container")
        watch.held(file not in other["tmp"] + other["shm"], "another action sees the files")
        watch.held(host not in neighbour.hosts(since=watch.started),
                   "the neighbour ran in the filled container")
        # An action whose only container fills /tmp and then dies: its next activation
        # cannot be in that container, and finds /tmp and /dev/shm empty.
        crasher = unique("fillcrash")
        await attacker.create(crasher, FILL)
        crash = await attacker.invoke(
            crasher, {"fill": ["/tmp", "/dev/shm"], "marker": marker, "crash": True})
        watch.held(crash["response"]["status"] == "action developer error", "no crash")
        fresh = result_of(await attacker.invoke(crasher, {"marker": marker}))
        watch.held(fresh["tmp"] == [] and fresh["shm"] == [],
                   f"after a crash, /tmp {fresh['tmp']} /dev/shm {fresh['shm']}")

    await under_attack(neighbour, "fill-tmp", fill)


@pytest.mark.skipif(os.geteuid() != 0, reason="bounding the proxy directory needs CAP_SYS_ADMIN")
async def test_filling_the_proxy_directory(
    attacker: Tenant, neighbour: NeighbourLoad, engine: Engine, settings: Settings
) -> None:
    """/ft is a directory of the invoker's host, bind-mounted for the proxy's socket and log
    files and writable by the action: the invoker makes it a small tmpfs of its own, so the
    action runs out of room there, not the host's disk."""
    name = unique("fillft")
    await attacker.create(name, FILL)
    quota = settings.container_io_quota_mb * MB
    # Checked before filling anything: on the host's disk, filling it would fill the disk.
    probe = result_of(await attacker.invoke(name, {}))
    source = await asyncio.to_thread(engine.proxy_dir, probe["host"])
    assert _is_tmpfs(source), f"the proxy directory {source} is on the host's disk"

    async def fill(watch: Watch) -> None:
        while await watch.again():
            marker = secrets.token_hex(4)
            record = await attacker.invoke(
                name, {"fill": ["/ft"], "files": True, "marker": marker, "clean": True})
            assert succeeded(record), record["response"]
            found = result_of(record)
            written, error = found["/ft"]
            watch.held(error == "ENOSPC" and written <= quota, f"/ft: {written} B, {error}")
            files, files_error = found["files"]
            watch.held(files_error == "ENOSPC" and files < 10_000, f"/ft: {files} files")
        print(f"proxy directory: {written} bytes then {error}; {files} files then "
              f"{files_error}; on the host a tmpfs at {source}")

    await under_attack(neighbour, "fill-proxy-dir", fill)


async def test_planted_log_files_are_not_followed(
    attacker: Tenant, neighbour: NeighbourLoad, tmp_path: Path
) -> None:
    """The invoker runs on the host (as root here) and reads the log file from a directory
    the action can write: a symlink must not make it read a host file into the attacker's
    logs, a FIFO must not hang it, a sparse terabyte must not fill its memory."""
    host_secret = f"host-secret-{secrets.token_hex(8)}"
    target = tmp_path / "host-only.txt"
    target.write_text(host_secret + "\n")
    name = unique("plant")
    tricks: dict[str, Any] = {"symlink": {"target": str(target)}, "fifo": {}, "sparse": {}}

    async def try_trick(watch: Watch, trick: str, extra: dict[str, Any]) -> None:
        record = await asyncio.wait_for(attacker.invoke(name, {"trick": trick, **extra}), 30)
        logs = "\n".join(record["logs"])
        watch.held(succeeded(record), f"{trick}: {record['response']}")
        watch.held(host_secret not in logs, f"{trick}: the host file is in the logs")
        watch.held(len(logs) <= 10 * MB + 200, f"{trick}: {len(logs)} bytes of logs")

    async def plant(watch: Watch) -> None:
        # A new version: a fresh container, with its log directory in place.
        await attacker.create(name, PLANT, limits={"timeout": 10_000})
        while await watch.again():
            for trick, extra in tricks.items():
                await try_trick(watch, trick, extra)
        # Replacing the log directory itself is for the container's last activation.
        await try_trick(watch, "symlinked-dir", {"target": str(tmp_path)})

    await under_attack(neighbour, "planted-log-files", plant)




def _is_tmpfs(path: str) -> bool:
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == path and line.split()[2] == "tmpfs" for line in mounts)
