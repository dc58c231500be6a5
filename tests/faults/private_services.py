"""Private RabbitMQ, Redis and Docker engine instances for the scenarios that restart them:
the shared ones serve other test sessions and must never be stopped. Each runs from the
installed binaries on free loopback ports (or its own Unix socket), with its state under a
directory of the test session, and is stopped by the pid of the process we started."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cli.cluster import free_port
from cli.services import amqp_ready

RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # not the wrapper that su's


def _wait(ready: object, what: str, timeout: float) -> float:
    start = time.monotonic()
    while not ready():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what} did not become ready within {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - start


def _stop(proc: subprocess.Popen[bytes] | None, pid: int | None, sig: int,
          timeout: float) -> float:
    """Signal ``pid`` (the server itself; ``proc`` may be a wrapper script), wait for ``proc``."""
    start = time.monotonic()
    if proc is None or proc.poll() is not None:
        return 0.0
    os.kill(pid or proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(pid or proc.pid, signal.SIGKILL)
        proc.wait()
    return time.monotonic() - start


@dataclass
class PrivateRabbit:
    """A RabbitMQ node of our own: own node name, ports, Mnesia and log directories, an own
    Erlang cookie (HOME), no plugins. Durable queues survive its restarts."""

    base: Path
    consumer_timeout_ms: int | None = None
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    node: str = field(default_factory=lambda: f"ft-faults-{uuid.uuid4().hex[:6]}@localhost")
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _configure(self) -> dict[str, str]:
        for sub in ("home", "mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        conf = [f"listeners.tcp.1 = 127.0.0.1:{self.port}", "loopback_users = none"]
        advanced = "[]."
        if self.consumer_timeout_ms is not None:
            conf.append(f"consumer_timeout = {self.consumer_timeout_ms}")
            # Channels check their consumers' timeouts on each tick (every 60 s by default).
            advanced = "[{rabbit, [{channel_tick_interval, 1000}]}]."
        (self.base / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        (self.base / "advanced.config").write_text(advanced + "\n")
        (self.base / "enabled_plugins").write_text("[].\n")
        return {
            "HOME": str(self.base / "home"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbit.pid"),
            "RABBITMQ_CONF_ENV_FILE": "/dev/null",  # not the shared node's settings
        }

    def start(self, timeout: float = 90) -> float:
        """Start (or start again, keeping its data); seconds until it speaks AMQP."""
        env = {**os.environ, **self._configure()}
        with open(self.base / "server.out", "ab") as out:
            self.proc = subprocess.Popen([RABBITMQ_SERVER], env=env, cwd=self.base,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return _wait(lambda: amqp_ready(self.port), f"RabbitMQ {self.node}", timeout)

    def _beam_pid(self) -> int | None:
        try:
            return int((self.base / "rabbit.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 60) -> float:
        """SIGTERM: the node shuts down cleanly (persistent messages are on disk)."""
        return _stop(self.proc, self._beam_pid(), signal.SIGTERM, timeout)


@dataclass
class PrivateRedis:
    """redis-server with AOF, ``appendfsync always``: a record the invoker wrote is on disk
    before the invoker acks the request, so even a SIGKILL of Redis loses no answer (with
    ``everysec`` a crash may lose the last second of acknowledged writes)."""

    base: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> float:
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.base / "redis.out", "ab") as out:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                 "--appendonly", "yes", "--appendfsync", "always", "--save", "",
                 "--dir", str(self.base)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return _wait(self._ready, "Redis", timeout)

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(7) == b"+PONG\r\n"
        except OSError:
            return False

    def kill(self) -> float:
        """SIGKILL: no shutdown save; what survives is what the AOF holds."""
        return _stop(self.proc, None, signal.SIGKILL, 10)

    def stop(self) -> float:
        return _stop(self.proc, None, signal.SIGTERM, 30)


@dataclass
class PrivateDockerd:
    """A Docker engine of our own: own data root, exec root (its own containerd), socket and
    pid file; no bridge, no iptables (containers run with --network none)."""

    base: Path
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return Path(f"/run/ft-faults-{self.tag}.sock")

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def exec_root(self) -> Path:
        # Short: containerd's sockets live under it, and Unix socket paths max out at 108.
        return Path(f"/run/ft-faults-{self.tag}")

    def start(self, timeout: float = 60) -> float:
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.base / "dockerd.log", "ab") as out:
            self.proc = subprocess.Popen(
                ["dockerd", "--data-root", str(self.base / "data"),
                 "--exec-root", str(self.exec_root), "-H", self.url,
                 "--pidfile", str(self.base / "dockerd.pid"),
                 "--bridge=none", "--iptables=false", "--ip-masq=false",
                 # Stopping, the engine gives each container 1 s after SIGTERM before it
                 # SIGKILLs it, instead of 10-15 s: the restart scenario needs running
                 # activations to die with the engine, not to be waited for.
                 "--shutdown-timeout", "1"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return _wait(self._ready, "the private Docker engine", timeout)

    def _ready(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.socket))
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return b"200 OK" in s.recv(256)
        except OSError:
            return False

    def load_images(self, images: list[str]) -> float:
        """Copy images from the shared engine (no registry here); seconds taken."""
        start = time.monotonic()
        for image in images:
            save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
            subprocess.run(["docker", "-H", self.url, "load", "-q"], stdin=save.stdout,
                           check=True, capture_output=True)
            assert save.wait() == 0, f"docker save {image} failed"
        return time.monotonic() - start

    def stop(self, timeout: float = 60) -> float:
        """SIGTERM: the engine stops every container it runs, then exits."""
        return _stop(self.proc, None, signal.SIGTERM, timeout)

    def containers(self, label: str) -> set[str]:
        out = subprocess.run(["docker", "-H", self.url, "ps", "-aq", "--filter",
                              f"label={label}"], check=True, capture_output=True, text=True)
        return set(out.stdout.split())

    def remove_state(self) -> None:
        shutil.rmtree(self.base / "data", ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
