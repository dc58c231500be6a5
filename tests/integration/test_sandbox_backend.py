"""The sandbox backend end to end: a cluster of its own whose invoker runs
``FT_CONTAINER_BACKEND=sandbox`` (bubblewrap, no Docker engine on the path), checked from
inside the functions it runs (who they are, what they can reach) and from the host (cgroups,
processes, what is left after a kill)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import docker
import pytest

from bus.broker import Broker
from bus.config import Settings
from invoker.backends import ContainerHandle
from invoker.backends.cgroups import ROOT, SandboxCgroup, unified
from invoker.backends.io_dirs import mount_points_under
from invoker.backends.sandbox import SandboxBackend
from invoker.outcome import OUT_OF_MEMORY, TIMEOUT_MESSAGE
from invoker.proxy_client import ProxyClient
from tests.cluster_fixtures import Cluster, wait_for_stem_cells
from tests.hostile.test_resources import FORK_BOMB, MEMORY_BOMB
from tests.integration.test_blackbox import baked_image  # noqa: F401  (the fixture)

ACTIONS = "/api/v1/namespaces/_/actions"

INSIDE = r'''
import ctypes, errno, os, socket

def main(args):
    if args.get("write"):
        with open("/tmp/mark", "w") as f:
            f.write(args["write"])
    status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
                  if ":\t" in line)
    libc = ctypes.CDLL(None, use_errno=True)
    unshare = libc.unshare(0x10000000)  # CLONE_NEWUSER
    unshare_errno = ctypes.get_errno()
    # clone(CLONE_NEWUSER | SIGCHLD), x86_64's call number: a namespace the other way in.
    cloned = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0)
    if cloned == 0:
        os._exit(0)
    clone_errno = ctypes.get_errno()
    try:
        open("/etc/written", "w")
        root_writable = True
    except OSError:
        root_writable = False
    try:
        socket.create_connection(("127.0.0.1", 3233), timeout=1)
        reached = True
    except OSError:
        reached = False
    return {
        "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "cap_eff": status["CapEff"].strip(), "cap_bnd": status["CapBnd"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(), "seccomp": status["Seccomp"].strip(),
        "host": socket.gethostname(), "pid": os.getpid(),
        "interfaces": sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net")
        else [line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]],
        "unshare_errno": errno.errorcode.get(unshare_errno) if unshare else None,
        "clone_errno": errno.errorcode.get(clone_errno) if cloned < 0 else None,
        "root_writable": root_writable, "reached_host_loopback": reached,
        "tmp_mark": open("/tmp/mark").read() if os.path.exists("/tmp/mark") else None,
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "env": {k: v for k, v in os.environ.items()
                if k in ("OMP_NUM_THREADS", "MALLOC_ARENA_MAX", "HOME")},
    }
'''
NODE = "function main(p) { return {node: process.version, heap: process.env.NODE_OPTIONS}; }"


@pytest.fixture
async def api(sandbox_cluster: Cluster) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=sandbox_cluster.api_host,
                                     headers=sandbox_cluster.auth_header) as s:
        yield s


async def _create(api: aiohttp.ClientSession, name: str, code: str, kind: str = "python:3.11",
                  **limits: int) -> None:
    body = {"exec": {"kind": kind, "code": code}, "limits": limits}
    async with api.put(f"{ACTIONS}/{name}?overwrite=true", json=body) as resp:
        assert resp.status == 200, await resp.text()


async def _invoke(api: aiohttp.ClientSession, name: str,
                  params: dict[str, object] | None = None) -> dict:
    async with api.post(f"{ACTIONS}/{name}?blocking=true", json=params or {}) as resp:
        body = await resp.json()
        assert resp.status in (200, 502), __import__("json").dumps(body)
        return body


def _group_dir(invoker_id: str, name: str = "") -> Path:
    return ROOT / ("" if unified() else "pids") / "funtainer" / invoker_id / name


def _cgroups(invoker_id: str) -> list[str]:
    base = _group_dir(invoker_id)
    return sorted(d.name for d in base.iterdir() if d.is_dir()) if base.is_dir() else []


def _sandbox_processes(invoker_id: str, comm: str | None = None) -> set[int]:
    """Processes (named ``comm``, if given) in the invoker's sandboxes' cgroups."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if ((comm is None or (entry / "comm").read_text().strip() == comm)
                        and f"/funtainer/{invoker_id}/" in (entry / "cgroup").read_text()):
                    found.add(int(entry.name))
            except OSError:
                pass
    return found


async def test_a_function_runs_rootless_read_only_and_alone(
    sandbox_cluster: Cluster, api: aiohttp.ClientSession,
) -> None:
    name = f"inside-{uuid.uuid4().hex[:6]}"
    await _create(api, name, INSIDE)
    record = await _invoke(api, name, {"write": "first"})
    assert record["response"]["success"], record
    inside = record["response"]["result"]
    assert (inside["uid"], inside["gid"], inside["groups"]) == (1000, 1000, [])
    assert inside["cap_eff"] == inside["cap_bnd"] == "0000000000000000"
    assert inside["no_new_privs"] == "1" and inside["seccomp"] == "2"
    assert inside["unshare_errno"] == inside["clone_errno"] == "EPERM"
    assert inside["root_writable"] is False
    assert inside["interfaces"] == ["lo"] and inside["reached_host_loopback"] is False
    groups = [f"ft_{i}_{g}" for i in sandbox_cluster.invoker_ids for g in _cgroups(i)]
    assert inside["host"] in groups  # a sandbox's host name is its name
    # Its own pid namespace: bubblewrap's reaper is 1, the proxy and what it runs follow.
    assert max(inside["processes"]) < 10, inside["processes"]
    assert inside["env"]["MALLOC_ARENA_MAX"] == "2" and inside["env"]["HOME"] == "/tmp"
    # The engine made nothing for this invoker.
    api_client = docker.APIClient(base_url=sandbox_cluster.settings.docker_url)
    try:
        ours = api_client.containers(
            all=True, filters={"label": f"funtainer.invoker={sandbox_cluster.invoker_ids[0]}"})
    finally:
        api_client.close()
    assert ours == []


async def test_tenants_do_not_share_tmp(api: aiohttp.ClientSession) -> None:
    first, second = f"tmp-a-{uuid.uuid4().hex[:6]}", f"tmp-b-{uuid.uuid4().hex[:6]}"
    await _create(api, first, INSIDE)
    await _create(api, second, INSIDE)
    wrote = await _invoke(api, first, {"write": "secret"})
    assert wrote["response"]["result"]["tmp_mark"] == "secret"
    other = await _invoke(api, second)
    assert other["response"]["result"]["tmp_mark"] is None
    again = await _invoke(api, first)  # its warm sandbox keeps its own /tmp
    assert again["response"]["result"]["tmp_mark"] == "secret"


async def test_node_runs_with_its_profile(api: aiohttp.ClientSession) -> None:
    name = f"node-{uuid.uuid4().hex[:6]}"
    await _create(api, name, NODE, kind="nodejs:18", memory=256)
    record = await _invoke(api, name)
    assert record["response"]["success"], record
    result = record["response"]["result"]
    assert result["node"].startswith("v18.")
    assert result["heap"] == "--max-old-space-size=192"


async def test_memory_and_pids_limits_hold(
    sandbox_cluster: Cluster, api: aiohttp.ClientSession,
) -> None:
    bomb = f"membomb-{uuid.uuid4().hex[:6]}"
    await _create(api, bomb, MEMORY_BOMB, memory=128, timeout=20_000)
    record = await _invoke(api, bomb)
    assert record["response"]["result"]["error"] == OUT_OF_MEMORY, record
    calm = await _invoke(api, bomb, {"calm": True})
    assert calm["response"]["success"], calm

    forks = f"forkbomb-{uuid.uuid4().hex[:6]}"
    await _create(api, forks, FORK_BOMB, timeout=3000)
    started = time.monotonic()
    record = await _invoke(api, forks)
    assert record["response"]["result"]["error"] == TIMEOUT_MESSAGE.format(ms=3000), record
    assert time.monotonic() - started < 20
    calm = await _invoke(api, forks, {"calm": True})
    assert calm["response"]["success"], calm


async def test_a_killed_invoker_takes_its_sandboxes_with_it(
    sandbox_cluster: Cluster, api: aiohttp.ClientSession,
) -> None:
    """No sandbox outlives its invoker (bubblewrap dies with its parent), and a new invoker
    with the same id removes the cgroups the old one left."""
    name = f"kill-{uuid.uuid4().hex[:6]}"
    await _create(api, name, INSIDE)
    assert (await _invoke(api, name))["response"]["success"]
    processes = sandbox_cluster.processes
    invoker_id = sandbox_cluster.invoker_ids[0]
    victim = processes.procs[invoker_id]
    assert _sandbox_processes(invoker_id, "bwrap")
    # Killed while it starts a sandbox (a stem cell for the one the invoke used): one whose
    # bubblewrap had not bound itself to its parent yet must go too.
    await _create(api, f"{name}-new", INSIDE)
    starting = asyncio.create_task(_invoke(api, f"{name}-new"))
    await asyncio.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    await asyncio.to_thread(victim.wait)
    starting.cancel()
    deadline = time.monotonic() + 10
    while _sandbox_processes(invoker_id):
        assert time.monotonic() < deadline, "sandboxes outlived their invoker"
        await asyncio.sleep(0.1)
    assert _cgroups(invoker_id)  # left behind by the kill...
    restarted_at = time.time()
    processes.restart(invoker_id)
    broker = await Broker.connect(sandbox_cluster.settings.amqp_url, name="sandbox-restart")
    try:
        await wait_for_stem_cells(broker, [invoker_id], timeout=60)
    finally:
        await broker.close()
    # ...and every group there now is the new invoker's.
    assert _cgroups(invoker_id)
    assert all(_group_dir(invoker_id, g).stat().st_ctime >= restarted_at - 1
               for g in _cgroups(invoker_id))
    assert (await _invoke(api, name))["response"]["success"]


@pytest.mark.parametrize("kind", ["python:3.11", "nodejs:18"])
async def test_a_sandbox_ends_with_its_lifeline(kind: str) -> None:
    """The lifeline alone, its invoker alive (so bubblewrap's --die-with-parent is not what
    ends it): all a sandbox whose start was cut short by its invoker's death has."""
    settings = Settings(invoker_id=f"life{uuid.uuid4().hex[:6]}", container_backend="sandbox")
    backend = SandboxBackend(settings)
    died = asyncio.Event()
    backend.watch(lambda _engine_id: died.set())
    try:
        handle = await backend.create("c0", kind, 256)
        client = ProxyClient(handle.socket_path)
        await client.connect(timeout=10)
        client.close()
        assert _sandbox_processes(settings.invoker_id)
        os.close(backend._lifeline_held)  # what the invoker's death does to it
        await asyncio.wait_for(died.wait(), timeout=10)
        deadline = time.monotonic() + 10
        while _sandbox_processes(settings.invoker_id):
            assert time.monotonic() < deadline, "the sandbox outlived its lifeline"
            await asyncio.sleep(0.05)
    finally:
        await backend.remove_leftovers()  # close() but for the lifeline's end, closed above
        os.close(backend._lifeline)
        assert mount_points_under(backend._io_root) == []


async def test_a_node_sandbox_leaves_the_lifeline_of_others_alone() -> None:
    """Node's libuv makes a pipe it watches non-blocking. Were the lifeline's description
    shared, every Python sandbox started after a Node one read EAGAIN and ended at once."""
    settings = Settings(invoker_id=f"life{uuid.uuid4().hex[:6]}", container_backend="sandbox")
    backend = SandboxBackend(settings)
    died: list[str] = []
    backend.watch(died.append)
    try:
        for pool_id, kind in (("c0", "nodejs:18"), ("c1", "python:3.11")):
            # One after the other: Node is up (its lifeline watched) before Python starts.
            client = ProxyClient((await backend.create(pool_id, kind, 256)).socket_path)
            await client.connect(timeout=10)
            client.close()
        await asyncio.sleep(1.0)  # a proxy that took the lifeline for ended is gone by now
        assert died == []
    finally:
        await backend.close()


async def test_a_blackbox_image_runs_unpacked_like_a_runtime(
    api: aiohttp.ClientSession, baked_image: str,  # noqa: F811
) -> None:
    name = f"bb-{uuid.uuid4().hex[:6]}"
    body = {"exec": {"kind": "blackbox", "image": baked_image}}
    async with api.put(f"{ACTIONS}/{name}", json=body) as resp:
        assert resp.status == 200, await resp.text()
    record = await _invoke(api, name, {"x": 7})
    assert record["response"]["result"] == {"from": "the image", "got": 7}, record


async def _run_inside(backend: SandboxBackend, pool_id: str, code: str = INSIDE) -> dict:
    return await _run_in(await backend.create(pool_id, "python:3.11", 256), code)


async def test_a_zygote_forks_sandboxes_confined_as_bubblewrap_starts_them() -> None:
    """The same action in a sandbox forked from the Python zygote and in one bubblewrap
    starts: the same user, capabilities, filter, network, file system and process view."""
    seen = {}
    for zygote in (True, False):
        settings = Settings(invoker_id=f"zyg{uuid.uuid4().hex[:6]}", sandbox_zygote=zygote,
                            container_backend="sandbox")
        backend = SandboxBackend(settings)
        try:
            seen[zygote] = await _run_inside(backend, "c0")
            forked = backend._live[backend._name("c0")].process is None
            assert forked is zygote  # the sandbox came the way asked
            assert _sandbox_processes(settings.invoker_id)
        finally:
            await backend.close()
    for result in seen.values():
        for varying in ("host", "pid", "processes"):
            result.pop(varying)
    assert seen[True] == seen[False]
    assert seen[True]["uid"] == 1000 and seen[True]["cap_eff"] == "0000000000000000"


async def test_a_killed_zygote_takes_its_sandboxes_and_a_new_one_starts() -> None:
    settings = Settings(invoker_id=f"zyg{uuid.uuid4().hex[:6]}", container_backend="sandbox")
    backend = SandboxBackend(settings)
    died: list[str] = []
    backend.watch(died.append)
    try:
        await _run_inside(backend, "c0")
        zygote = backend._zygotes["python:3.11"]
        assert zygote is not None
        zygote.process.kill()
        deadline = time.monotonic() + 10
        while backend._name("c0") not in died:  # the pool is told, as of any death
            assert time.monotonic() < deadline, "a sandbox outlived its zygote"
            await asyncio.sleep(0.05)
        assert (await _run_inside(backend, "c1"))["uid"] == 1000
        assert backend._zygotes["python:3.11"] is not zygote
        assert backend._live[backend._name("c1")].process is None  # forked again
    finally:
        await backend.close()


async def test_a_closed_backend_leaves_no_mount_behind() -> None:
    """A proxy directory mounted before the zygote starts (a Node sandbox's) and one after:
    closing takes both and the root's bind (os.path.ismount does not see that bind)."""
    settings = Settings(invoker_id=f"mnt{uuid.uuid4().hex[:6]}", container_backend="sandbox")
    backend = SandboxBackend(settings)
    io_root = backend._io_root
    try:
        for pool_id, kind in (("c0", "nodejs:18"), ("c1", "python:3.11")):
            client = ProxyClient((await backend.create(pool_id, kind, 256)).socket_path)
            await client.connect(timeout=10)
            client.close()
        assert len(mount_points_under(io_root)) >= 3  # the root's bind and both directories
    finally:
        await backend.close()
    assert mount_points_under(io_root) == []


TAMPER = r'''
import os

def main(args):
    os.makedirs("/ft/left/deep", exist_ok=True)
    with open("/ft/left/deep/secret", "w") as f:
        f.write("tenant a")
    os.symlink("/etc/passwd", "/ft/link")
    os.setxattr("/ft", "user.secret", b"tenant a")
    os.chmod("/ft", 0o777)
    return {"ft": sorted(os.listdir("/ft"))}
'''

LOOK = r'''
import os

def main(args):
    return {"ft": sorted(os.listdir("/ft")), "xattrs": os.listxattr("/ft"),
            "mode": oct(os.stat("/ft").st_mode & 0o777)}
'''


async def test_a_new_sandbox_reuses_a_group_and_directory_with_nothing_left_in_them() -> None:
    """A sandbox's empty cgroups and emptied proxy directory go to the next one: it finds
    none of the last one's files, extended attributes or mode there, and its own limits."""
    settings = Settings(invoker_id=f"reu{uuid.uuid4().hex[:6]}", container_backend="sandbox")
    backend = SandboxBackend(settings)
    try:
        first = await backend.create("c0", "python:3.11", 256)
        tampered = await _run_in(first, TAMPER)
        assert {"left", "link"} <= set(tampered["ft"])
        group = backend._live[first.engine_id].cgroup
        await backend.destroy(first)
        assert group in backend._empty_groups  # empty, and no OOM kill seen in it
        # Spares are taken first (they joined groups ahead): once they are used up, the
        # directory and group the first sandbox left are the ones a new sandbox gets.
        handles = [await backend.create(f"c{n}", "python:3.11", 512) for n in range(1, 5)]
        second = next(h for h in handles if h.io_dir == first.io_dir)
        assert await _run_in(second, LOOK) == {"ft": ["logs", "proxy.sock"], "xattrs": [],
                                               "mode": "0o700"}
        reused = next(h for h in handles if backend._live[h.engine_id].cgroup is group)
        memory = group.dirs[0] / ("memory.max" if group.v2 else "memory.limit_in_bytes")
        assert int(memory.read_text()) == 512 * 1024 * 1024
        assert group.dirs[0].name == reused.pool_id or group.v2
    finally:
        await backend.close()
    assert mount_points_under(backend._io_root) == []
    assert _cgroups(settings.invoker_id) == []


async def _run_in(handle: ContainerHandle, code: str) -> dict:
    client = ProxyClient(handle.socket_path)
    await client.connect(timeout=10)
    try:
        init = {"value": {"name": "inside", "main": "main", "code": code}}
        status, body = await client.post("/init", json.dumps(init).encode(), 10)
        assert status == 200, body
        status, body = await client.post("/run", json.dumps({"value": {}}).encode(), 10)
        assert status == 200, body
        return json.loads(body)
    finally:
        client.close()


async def test_a_zygote_that_fails_is_retired_and_its_sandboxes_go_on_serving() -> None:
    """A zygote that cannot make a sandbox is asked for no more; bubblewrap starts the next
    one. It is not ended: as pid 1 of the pid namespace its sandboxes' are nested in, its end
    would end them, and they still serve."""
    kind = "python:3.11"
    settings = Settings(invoker_id=f"ret{uuid.uuid4().hex[:6]}", container_backend="sandbox")
    backend = SandboxBackend(settings)
    try:
        first = await backend.create("c0", kind, 256)
        backend._discard_spares(kind)  # the next start asks the zygote to fork
        zygote_group = SandboxCgroup(backend._cgroup_base, "zygote-python-3-11")
        pids = zygote_group.dirs[0 if zygote_group.v2 else 1]
        # No fork left: the zygote's group holds at least the zygote (spares that have yet
        # to join their own groups may be there too, and leave as they are discarded).
        (pids / "pids.max").write_text("1")
        second = await backend.create("c1", kind, 256)
        assert backend._live[second.engine_id].process is not None  # bubblewrap's
        assert backend._zygotes[kind] is None
        assert (await _run_in(first, LOOK))["ft"] == ["logs", "proxy.sock"]
        assert (await _run_in(second, LOOK))["mode"] == "0o700"
    finally:
        await backend.close()
    assert _cgroups(settings.invoker_id) == []
