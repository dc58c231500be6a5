"""Start the services the platform needs (RabbitMQ, Redis, the Docker engine) when they are
not reachable, from their installed binaries. Used by `ft up` and the test command."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

STATE_DIR = Path(os.environ.get("FT_STATE_DIR", "/var/lib/funtainer"))
DOCKER_SOCKET = Path("/var/run/docker.sock")
CONSUMER_TIMEOUT_MS = 7 * 3600 * 1000


class ServiceError(RuntimeError):
    pass


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def amqp_ready(port: int = 5672, host: str = "127.0.0.1") -> bool:
    """The broker answers the AMQP protocol header with Connection.Start (a method frame)."""
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            return s.recv(1) == b"\x01"
    except OSError:
        return False


def _docker_ready() -> bool:
    if not DOCKER_SOCKET.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(DOCKER_SOCKET))
            s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b"200 OK" in s.recv(256)
    except OSError:
        return False


def wait_until(ready: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} did not become ready within {timeout:.0f} s")
        time.sleep(0.25)


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise ServiceError(f"{binary} is not installed (apt-get install {package})")
    return path


def ensure_redis(say: Callable[[str], None]) -> None:
    if _port_open(6379):
        return
    say("starting Redis (AOF on)")
    data = STATE_DIR / "redis"
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [_require("redis-server", "redis-server"), "--daemonize", "yes", "--port", "6379",
         "--bind", "127.0.0.1", "--appendonly", "yes", "--dir", str(data),
         "--pidfile", str(STATE_DIR / "redis.pid"), "--logfile", str(data / "redis.log")],
        check=True,
    )
    wait_until(lambda: _port_open(6379), "Redis", 20)


def ensure_rabbitmq(say: Callable[[str], None]) -> None:
    if amqp_ready():
        return
    say("starting RabbitMQ")
    # A throttled event waits unacked for its namespace's window, up to an action's longest
    # maxEventAgeSeconds (6 h); RabbitMQ's default 30 min consumer_timeout would cut it short.
    env = {**os.environ, "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS":
           f"-rabbit consumer_timeout {CONSUMER_TIMEOUT_MS}"}
    subprocess.run([_require("rabbitmq-server", "rabbitmq-server"), "-detached"], check=True,
                   capture_output=True, env=env)
    wait_until(amqp_ready, "RabbitMQ", 90)


def ensure_docker(say: Callable[[str], None]) -> None:
    if _docker_ready():
        return
    say("starting the Docker engine")
    dockerd = _require("dockerd", "docker.io")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "dockerd.log", "ab") as logfile:
        # No bridge and no iptables: containers run with --network none, and this machine
        # must not route container traffic anywhere.
        proc = subprocess.Popen(
            [dockerd, "--bridge=none", "--iptables=false", "--ip-masq=false"],
            stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True,
        )
    (STATE_DIR / "dockerd.pid").write_text(str(proc.pid))
    wait_until(_docker_ready, "the Docker engine", 60)


def ensure_all(say: Callable[[str], None] = print) -> None:
    ensure_redis(say)
    ensure_rabbitmq(say)
    ensure_docker(say)


def status() -> dict[str, bool]:
    return {"redis": _port_open(6379), "rabbitmq": amqp_ready(), "docker": _docker_ready()}


def main(args: argparse.Namespace) -> int:
    action = getattr(args, "services_action", None) or "up"
    if action == "status":
        for name, up in status().items():
            print(f"{name:<10} {'up' if up else 'down'}")
        return 0 if all(status().values()) else 1
    try:
        ensure_all()
    except (ServiceError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}")
        return 1
    print("ok: RabbitMQ, Redis and the Docker engine are running")
    return 0
