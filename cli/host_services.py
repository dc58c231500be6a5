"""The services of a multi-host cluster, each on its test host (cli/hosts.py): a RabbitMQ
cluster (one node per host, formed from a static peer list), and Redis with a replica.

Every process runs in the foreground as our child (epmd included, which each host needs for
its RabbitMQ node), so the network's ``down`` stops exactly what was started. Nodes are named
``rabbit@h1`` ...; Erlang resolves those names through an inetrc file of our own
(``ERL_INETRC``), so neither the machine's /etc/hosts nor its hostname is touched."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cli.hosts import Host, HostNetwork
from cli.services import amqp_ready, wait_until

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
AMQP_PORT = 5672
REDIS_PORT = 6379
# As `ft services up` sets it: a throttled event may wait its namespace's window for hours.
CONSUMER_TIMEOUT_MS = 7 * 3600 * 1000


def redis_answers(address: str, port: int = REDIS_PORT) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RabbitCluster:
    """One RabbitMQ node per host in ``hosts``, clustered."""

    network: HostNetwork
    hosts: list[Host]
    base: Path  # node directories, logs, the Erlang cookie

    def node(self, host: Host) -> str:
        return f"rabbit@{host.name}"

    def url(self, host: Host) -> str:
        return f"amqp://guest:guest@{host.address}:{AMQP_PORT}/"

    @property
    def _inetrc(self) -> Path:
        return self.base / "inetrc"

    def _env(self, host: Host | None = None) -> dict[str, str]:
        env = {**os.environ, "HOME": str(self.base), "ERL_INETRC": str(self._inetrc)}
        if host is not None:
            node_dir = self.base / host.name
            env |= {
                "RABBITMQ_NODENAME": self.node(host),
                "RABBITMQ_MNESIA_BASE": str(node_dir / "mnesia"),
                "RABBITMQ_LOG_BASE": str(node_dir / "log"),
                "RABBITMQ_CONFIG_FILE": str(node_dir / "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(node_dir / "enabled_plugins"),
                "RABBITMQ_PID_FILE": str(node_dir / "rabbitmq.pid"),
            }
        return env

    def start(self, timeout: float = 120) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        cookie = self.base / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(20))
            cookie.chmod(0o400)
        # rabbitmqctl is an Erlang node too, named after this machine; it always runs on the
        # first host (``ctl``), so that is where the nodes must find it when they answer.
        names = {host: [host.name] for host in self.network.hosts}
        names[self.hosts[0]].append(socket.gethostname())
        lines = [f'{{host, {{{host.address.replace(".", ",")}}}, {json.dumps(aliases)}}}.'
                 for host, aliases in names.items()]
        self._inetrc.write_text("\n".join([*lines, "{lookup, [file, native]}.", ""]))
        for host in self.hosts:
            self._configure(host)
        for host in self.hosts:
            self.start_node(host)
        for host in self.hosts:
            wait_until(lambda h=host: amqp_ready(AMQP_PORT, h.address), f"RabbitMQ on {host.name}",
                       timeout)
        wait_until(lambda: len(self.running_nodes(self.hosts[0])) == len(self.hosts),
                   "the RabbitMQ cluster", timeout)

    def _configure(self, host: Host) -> None:
        node_dir = self.base / host.name
        (node_dir / "log").mkdir(parents=True, exist_ok=True)
        (node_dir / "enabled_plugins").write_text("[].\n")
        peers = [f"cluster_formation.classic_config.nodes.{i} = {self.node(h)}"
                 for i, h in enumerate(self.hosts, start=1)]
        (node_dir / "rabbitmq.conf").write_text("\n".join([
            f"listeners.tcp.default = {AMQP_PORT}",
            "loopback_users = none",
            "cluster_formation.peer_discovery_backend = classic_config",
            *peers,
            f"consumer_timeout = {CONSUMER_TIMEOUT_MS}",
            "",
        ]))

    def start_node(self, host: Host) -> None:
        log = open(self.base / host.name / "console.log", "ab")
        try:
            # epmd first, as our own child: the node would start one we could not stop.
            self.network.started(subprocess.Popen(
                host.command(["epmd"]), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))
            time.sleep(0.2)
            self.network.started(subprocess.Popen(
                host.command([str(RABBITMQ_BIN / "rabbitmq-server")]), env=self._env(host),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        finally:
            log.close()

    def ctl(self, host: Host, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """rabbitmqctl against ``host``'s node, run on the first host (see ``start``)."""
        return subprocess.run(
            self.hosts[0].command([str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node(host),
                                   *args]),
            env=self._env(), capture_output=True, text=True, timeout=timeout)

    def running_nodes(self, host: Host) -> list[str]:
        done = self.ctl(host, "cluster_status", "--formatter", "json")
        if done.returncode != 0:
            return []
        return list(json.loads(done.stdout).get("running_nodes", []))


@dataclass
class RedisPair:
    """A Redis primary on one host and its replica on another."""

    network: HostNetwork
    primary: Host
    replica: Host
    base: Path

    @property
    def url(self) -> str:
        return f"redis://{self.primary.address}:{REDIS_PORT}/0"

    def start(self, timeout: float = 30) -> None:
        for host, extra in ((self.primary, []),
                            (self.replica, ["--replicaof", self.primary.address,
                                            str(REDIS_PORT)])):
            data = self.base / f"redis-{host.name}"
            data.mkdir(parents=True, exist_ok=True)
            with open(data / "redis.log", "ab") as log:
                self.network.started(subprocess.Popen(host.command([
                    "redis-server", "--port", str(REDIS_PORT), "--bind", host.address,
                    "--protected-mode", "no", "--dir", str(data), "--appendonly", "yes",
                    "--save", "", *extra]), stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
        for host in (self.primary, self.replica):
            wait_until(lambda h=host: redis_answers(h.address), f"Redis on {host.name}",
                       timeout)
