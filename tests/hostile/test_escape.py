"""Reaching out of the container: other tenants' secrets, the Docker socket, the host's network
(RabbitMQ, Redis, the gateway) and privileges through setuid binaries or system calls.

Every probe runs inside the attacker's action and reports what it got; the test judges it.
Network probes only ever target loopback and Unix sockets."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

from tests.cluster_fixtures import Cluster
from tests.hostile.harness import (
    NeighbourLoad,
    Tenant,
    Watch,
    result_of,
    succeeded,
    under_attack,
    unique,
)

SNOOP = r'''
import os

LIMIT = 1 << 16

def read(path):
    try:
        with open(path, "rb") as f:
            return f.read(LIMIT).replace(b"\0", b"\n").decode(errors="replace")
    except OSError as exc:
        return f"<{type(exc).__name__}>"

def main(args):
    places = {"env": "\n".join(f"{k}={v}" for k, v in os.environ.items())}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        for what in ("environ", "cmdline"):
            places[f"/proc/{pid}/{what}"] = read(f"/proc/{pid}/{what}")
        for tid in os.listdir(f"/proc/{pid}/task"):
            places[f"/proc/{pid}/task/{tid}/environ"] = read(f"/proc/{pid}/task/{tid}/environ")
    for root in ("/ft", "/tmp", "/dev/shm", "/run", "/var/run"):
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                if not path.endswith(".sock"):
                    places[path] = read(path)
    places["listing"] = "\n".join(
        os.path.join(folder, name)
        for root in ("/ft", "/tmp", "/dev/shm") for folder, dirs, files in os.walk(root)
        for name in dirs + files)
    return {"places": places}
'''

DOCKER_SOCKET = r'''
import errno, os, socket, stat

KNOWN = ["/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock",
         "/var/run/containerd/containerd.sock", "/run/docker/containerd/containerd.sock",
         "/var/run/docker/metrics.sock", "/run/docker/metrics.sock", "/run/runc"]

def try_connect(address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(address)
        s.sendall(b"GET /version HTTP/1.0\r\n\r\n")
        return "connected: " + s.recv(200).decode(errors="replace")
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc))
    finally:
        s.close()

def main(args):
    found = {}
    for path in KNOWN:
        found[path] = try_connect(path) if os.path.exists(path) else "absent"
    # Any other socket file anywhere but our own proxy's.
    for folder, dirs, files in os.walk("/"):
        if folder in ("/proc", "/sys"):
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(folder, name)
            try:
                is_socket = stat.S_ISSOCK(os.lstat(path).st_mode)
            except OSError:
                continue
            if is_socket and path != "/ft/proxy.sock":
                found[path] = try_connect(path)
    # Abstract sockets live in the network namespace: only the container's own are listed.
    for line in open("/proc/net/unix").read().splitlines()[1:]:
        parts = line.split()
        if len(parts) == 8 and parts[7].startswith("@"):
            found[parts[7]] = try_connect("\0" + parts[7][1:])
    return {"found": found}
'''

NETWORK = r'''
import errno, socket

def main(args):
    results = {}
    for host, port in args["targets"]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(1)
        try:
            s.connect((host, port))
            results[f"[{host}]:{port}"] = "connected"
        except OSError as exc:
            results[f"[{host}]:{port}"] = errno.errorcode.get(exc.errno, str(exc))
        finally:
            s.close()
    lines = open("/proc/net/dev").read().splitlines()[2:]
    interfaces = sorted(line.split(":")[0].strip() for line in lines)
    routes = open("/proc/net/route").read().splitlines()[1:]
    return {"connect": results, "interfaces": interfaces, "routes": routes}
'''

PRIVILEGES = r'''
import ctypes, errno, os, stat, subprocess, time

# Arguments that make each setuid binary try something only root may do, or wait for a
# password, during which its credentials can be read from /proc.
ARGS = {"su": ["root", "-c", "id"], "mount": ["-t", "tmpfs", "none", "/tmp"],
        "umount": ["/tmp"], "gpasswd": ["-r", "root"], "newgrp": ["root"],
        "chage": ["-l", "root"], "unix_chkpwd": ["root", "nullok"]}

def errname(exc):
    return errno.errorcode.get(exc.errno, str(exc))

def status(pid="self"):
    fields = {}
    for line in open(f"/proc/{pid}/status").read().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields

def attempt(call):
    try:
        call()
        return "succeeded"
    except OSError as exc:
        return errname(exc)

def setuid_binaries():
    found = []
    for folder, dirs, files in os.walk("/"):
        if folder in ("/proc", "/sys", "/dev"):
            dirs[:] = []
            continue
        for name in files:
            path = os.path.join(folder, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID):
                found.append(path)
    return sorted(found)

def run_setuid(path):
    proc = subprocess.Popen([path, *ARGS.get(os.path.basename(path), [])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.2)
    creds = status(proc.pid)  # still running (waiting for a password) or a zombie: both tell
    proc.kill()
    _, err = proc.communicate()
    return {"uid": creds["Uid"], "gid": creds["Gid"], "returncode": proc.returncode,
            "stderr": err.decode(errors="replace")[:200]}

def main(args):
    libc = ctypes.CDLL(None, use_errno=True)
    own = status()
    out = {"caps": {k: own[k][0] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
           "no_new_privs": own["NoNewPrivs"][0], "uid": own["Uid"]}
    out["calls"] = {
        "setuid(0)": attempt(lambda: os.setuid(0)),
        "seteuid(0)": attempt(lambda: os.seteuid(0)),
        "setresuid(0,0,0)": attempt(lambda: os.setresuid(0, 0, 0)),
        "setgid(0)": attempt(lambda: os.setgid(0)),
        "setgroups([0])": attempt(lambda: os.setgroups([0])),
        "chown(/tmp, 0)": attempt(lambda: os.chown("/tmp", 0, 0)),
        "open(/etc/shadow)": attempt(lambda: open("/etc/shadow").close()),
    }
    syscalls = {
        "unshare(CLONE_NEWUSER)": lambda: libc.unshare(0x10000000),
        "unshare(CLONE_NEWNS)": lambda: libc.unshare(0x00020000),
        "mount(tmpfs, /tmp)": lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None),
    }
    for name, call in syscalls.items():
        failed = call() != 0
        out["calls"][name] = errno.errorcode.get(ctypes.get_errno()) if failed else "succeeded"
    out["setuid_binaries"] = {path: run_setuid(path) for path in setuid_binaries()}
    return out
'''


async def test_secrets_of_other_tenants_are_nowhere_to_be_read(
    attacker: Tenant, neighbour: NeighbourLoad
) -> None:
    """The neighbour's action got its secret as an `init` parameter, i.e. in its environment.
    The attacker reads every environment and command line it can see and every file in the
    places an action can write or that are shared with the host; its own `init` parameter
    shows the probe can find a secret where there is one."""
    name = unique("snoop")
    own_secret = f"own-{unique('token')}"
    await attacker.create(name, SNOOP, parameters=[
        {"key": "ATTACKER_TOKEN", "value": own_secret, "init": True}])
    places: dict[str, str] = {}

    async def snoop(watch: Watch) -> None:
        while await watch.again():
            record = await attacker.invoke(name)
            assert succeeded(record), record["response"]
            found = result_of(record)["places"]
            places.update(found)
            watch.held(own_secret in found["env"], "the probe cannot even see its own secret")
            for place, content in found.items():
                watch.held(neighbour.secret not in content, f"neighbour's secret in {place}")
                watch.held("nbr-" not in content, f"something like it in {place}")

    await under_attack(neighbour, "secrets", snoop)
    # The control: the secret is really there, in the neighbour's own container.
    async with neighbour.tenant() as tenant:
        theirs = result_of(await tenant.invoke(neighbour.action))
    assert theirs["secret_sha"] == hashlib.sha256(neighbour.secret.encode()).hexdigest()[:16]
    print(f"secrets: read {len(places)} places, e.g. {sorted(places)[:8]}")


async def test_the_docker_socket_is_out_of_reach(
    attacker: Tenant, neighbour: NeighbourLoad
) -> None:
    name = unique("dockersock")
    await attacker.create(name, DOCKER_SOCKET)
    found: dict[str, str] = {}

    async def dial(watch: Watch) -> None:
        while await watch.again():
            record = await attacker.invoke(name)
            assert succeeded(record), record["response"]
            tried = result_of(record)["found"]
            found.update(tried)
            for where, outcome in tried.items():
                watch.held(not outcome.startswith("connected"), f"{where}: {outcome}")

    await under_attack(neighbour, "docker-socket", dial)
    assert found["/var/run/docker.sock"] == "absent", found
    print(f"docker socket: {found}")


async def test_the_host_network_is_unreachable(
    attacker: Tenant, neighbour: NeighbourLoad, cluster: Cluster
) -> None:
    """`--network none`: the container has its own loopback and nothing else, so RabbitMQ,
    Redis, the gateway and a Docker TCP socket on the host's loopback are all out of reach."""
    gateway_port = urlsplit(cluster.api_host).port
    ports = sorted({5672, 15672, 6379, 3233, 2375, 2376, gateway_port or 3233})
    targets = [[host, port] for host in ("127.0.0.1", "::1") for port in ports]
    name = unique("netscan")
    await attacker.create(name, NETWORK)
    found: dict[str, Any] = {}

    async def scan(watch: Watch) -> None:
        while await watch.again():
            record = await attacker.invoke(name, {"targets": targets})
            assert succeeded(record), record["response"]
            found.update(result_of(record))
            for where, outcome in found["connect"].items():
                watch.held(outcome != "connected", f"{where} connected")
            watch.held(found["interfaces"] == ["lo"], f"interfaces {found['interfaces']}")
            watch.held(found["routes"] == [], f"routes {found['routes']}")

    await under_attack(neighbour, "host-network", scan)
    print(f"network: {found}")


async def test_no_privileges_to_gain(attacker: Tenant, neighbour: NeighbourLoad) -> None:
    """uid 1000, every capability dropped, no-new-privileges (so setuid bits are ignored at
    exec), Docker's seccomp profile (no user namespaces, no mounts)."""
    name = unique("setuid")
    await attacker.create(name, PRIVILEGES)
    found: dict[str, Any] = {}
    # In a sandbox's user namespace uid and gid 0 do not exist at all (only 1000 is mapped):
    # the kernel refuses to switch to them with EINVAL, not EPERM.
    refused = ("EPERM", "EACCES") + (("EINVAL",) if neighbour.backend == "sandbox" else ())

    async def escalate(watch: Watch) -> None:
        while await watch.again():
            record = await attacker.invoke(name)
            assert succeeded(record), record["response"]
            found.update(result_of(record))
            for cap, value in found["caps"].items():
                watch.held(int(value, 16) == 0, f"{cap}={value}")
            watch.held(found["no_new_privs"] == "1", "no_new_privs not set")
            watch.held(found["uid"] == ["1000"] * 4, f"uid {found['uid']}")
            for call, outcome in found["calls"].items():
                watch.held(outcome in refused, f"{call}: {outcome}")
            for path, run in found["setuid_binaries"].items():
                unprivileged = run["uid"] == ["1000"] * 4 and run["gid"] == ["1000"] * 4
                watch.held(unprivileged, f"{path} ran with uid {run['uid']} gid {run['gid']}")

    await under_attack(neighbour, "privileges", escalate)
    binaries = found["setuid_binaries"]
    assert "/usr/bin/su" in binaries, binaries  # the probe did find setuid binaries to try
    print(f"privileges: calls {found['calls']}; setuid binaries tried: {sorted(binaries)}")
