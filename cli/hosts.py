"""Several hosts on this machine (`ft hosts up|down`, `python -m bench.scale_out`, the cross-host
tests): each host a network namespace of its own, all joined by a bridge that lives in one
more namespace, with addresses in a private test range that exists only there.

The machine itself reaches them through one veth of its own into the bridge (the first address
of the range), so tests and benchmarks talk to the hosts' gateways, brokers and Redis as
clients on another machine would. Nothing is routed anywhere else: the namespaces have no
default route.

Processes are started on a host with ``nsenter --net``: only the network is the host's; the
file system (runtime images, cgroups) is the machine's, which is what lets the invokers' sandbox
backend work there unchanged. (``ip netns exec`` would also remount /sys, and with it the
cgroup hierarchies the sandboxes need.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

NETNS_DIR = Path("/run/netns")
STATE_DIR = Path("/run/funtainer-hosts")  # what a crashed run left, for `ft hosts down`


class HostsError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise HostsError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Host:
    name: str  # "h1"
    address: str  # its address on the test bridge
    netns: str

    def command(self, argv: Iterable[str]) -> list[str]:
        """``argv`` run with this host's network (and nothing else of it)."""
        return ["nsenter", f"--net={NETNS_DIR / self.netns}", "--", *argv]


@dataclass
class HostNetwork:
    """``count`` hosts h1..hN at 10.213.<subnet>.11.. on a bridge; the machine is .1."""

    tag: str  # a few letters: names of namespaces and links (links take 15 characters)
    count: int
    subnet: int = 0
    hosts: list[Host] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)  # processes started on the hosts

    def __post_init__(self) -> None:
        if not 0 <= self.subnet <= 255 or len(self.tag) > 8:
            raise HostsError("subnet is 0..255 and the tag at most 8 characters")
        self.hosts = [Host(f"h{i}", f"{self.prefix}.{10 + i}", f"ft{self.tag}-h{i}")
                      for i in range(1, self.count + 1)]

    @property
    def prefix(self) -> str:
        return f"10.213.{self.subnet}"

    @property
    def machine_address(self) -> str:
        return f"{self.prefix}.1"

    @property
    def bridge_netns(self) -> str:
        return f"ft{self.tag}-net"

    @property
    def machine_link(self) -> str:
        return f"ft{self.tag}"

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    # -- building and removing ---------------------------------------------------------------

    def up(self) -> None:
        self._remember()
        try:
            bridge = self.bridge_netns
            _ip("netns", "add", bridge)
            _ip("-n", bridge, "link", "add", "br0", "type", "bridge")
            _ip("-n", bridge, "link", "set", "br0", "up")
            _ip("link", "add", self.machine_link, "type", "veth", "peer", "name", "machine",
                "netns", bridge)
            _ip("-n", bridge, "link", "set", "machine", "master", "br0", "up")
            _ip("addr", "add", f"{self.machine_address}/24", "dev", self.machine_link)
            _ip("link", "set", self.machine_link, "up")
            for host in self.hosts:
                _ip("netns", "add", host.netns)
                _ip("-n", bridge, "link", "add", host.name, "type", "veth", "peer", "name",
                    "eth0", "netns", host.netns)
                _ip("-n", bridge, "link", "set", host.name, "master", "br0", "up")
                _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
                _ip("-n", host.netns, "link", "set", "eth0", "up")
                _ip("-n", host.netns, "link", "set", "lo", "up")
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Stop what was started on the hosts (by pid: only our own) and remove it all."""
        stop_pids(self.pids)
        _ip("link", "del", self.machine_link, check=False)
        for host in self.hosts:
            _ip("netns", "del", host.netns, check=False)
        _ip("netns", "del", self.bridge_netns, check=False)
        (STATE_DIR / f"{self.tag}.json").unlink(missing_ok=True)

    def started(self, proc: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
        """Remember a process started on a host, so ``down`` (even another run's) stops it."""
        self.pids.append(proc.pid)
        self._remember()
        return proc

    def _remember(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        (STATE_DIR / f"{self.tag}.json").write_text(json.dumps(
            {"tag": self.tag, "count": self.count, "subnet": self.subnet, "pids": self.pids}))

    @classmethod
    def leftovers(cls) -> list[HostNetwork]:
        """Networks an earlier run recorded and did not remove."""
        found = []
        for path in sorted(STATE_DIR.glob("*.json")) if STATE_DIR.is_dir() else []:
            state = json.loads(path.read_text())
            network = cls(state["tag"], state["count"], state["subnet"])
            network.pids = list(state["pids"])
            found.append(network)
        return found

    # -- faults ------------------------------------------------------------------------------

    def partition(self, name: str) -> None:
        """Cut a host off the bridge (its veth down): it sees nobody, nobody sees it."""
        _ip("-n", self.bridge_netns, "link", "set", name, "down")

    def heal(self, name: str) -> None:
        _ip("-n", self.bridge_netns, "link", "set", name, "up")


def stop_pids(pids: list[int], grace_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL what is left after ``grace_s``. Each pid is one this code started
    (and whose command line still names it: a pid reused by a stranger is left alone)."""
    live = [pid for pid in pids if _alive(pid)]
    for pid in live:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while live and time.monotonic() < deadline:
        time.sleep(0.1)
        live = [pid for pid in live if _alive(pid)]
    for pid in live:
        _signal(pid, signal.SIGKILL)
    pids.clear()


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap our own zombie children
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
