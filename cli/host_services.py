"""The services of a multi-host cluster, each on its test host (cli/hosts.py): a RabbitMQ
cluster (one node per host, formed from a static peer list), and Redis with a replica and
three Sentinels.

Every process runs in the foreground as our child (epmd included, which each host needs for
its RabbitMQ node), so the network's ``down`` stops exactly what was started. Nodes are named
``rabbit@h1`` ...; Erlang resolves those names through an inetrc file of our own
(``ERL_INETRC``), so neither the machine's /etc/hosts nor its hostname is touched."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis

from cli.hosts import Host, HostNetwork, HostsError
from cli.services import amqp_ready, wait_until

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
AMQP_PORT = 5672
REDIS_PORT = 6379
SENTINEL_PORT = 26379
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
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # by host name

    def node(self, host: Host) -> str:
        return f"rabbit@{host.name}"

    def url(self, host: Host) -> str:
        return f"amqp://guest:guest@{host.address}:{AMQP_PORT}/"

    def urls(self, first: Host) -> str:
        """Every node, ``first``'s own first (``FT_AMQP_URL`` of a process on ``first``)."""
        ordered = [first, *(h for h in self.hosts if h != first)]
        return ",".join(self.url(h) for h in ordered)

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

    def start_node(self, host: Host, *, with_epmd: bool = True) -> None:
        log = open(self.base / host.name / "console.log", "ab")
        try:
            if with_epmd:
                # epmd first, as our own child: the node would start one we could not stop.
                self.network.started(subprocess.Popen(
                    host.command(["epmd"]), stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
                time.sleep(0.2)
            self.servers[host.name] = self.network.started(subprocess.Popen(
                host.command([str(RABBITMQ_BIN / "rabbitmq-server")]), env=self._env(host),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        finally:
            log.close()

    # -- faults ------------------------------------------------------------------------------

    def leader(self, queue: str) -> Host:
        """The host whose node leads quorum queue ``queue``."""
        running = next(h for h in self.hosts if h.name in self.servers)
        done = self.ctl(running, "list_queues", "name", "leader", "--formatter", "json")
        if done.returncode != 0:
            raise HostsError(f"rabbitmqctl list_queues: {done.stderr.strip()}")
        leader = next(q["leader"] for q in json.loads(done.stdout) if q["name"] == queue)
        return next(h for h in self.hosts if self.node(h) == leader)

    def client_connections(self) -> Counter[str]:
        """The clients connected to the cluster's running nodes, by the name each gave its
        connection (``ft-gateway``, ...)."""
        running = next(h for h in self.hosts if h.name in self.servers)
        done = self.ctl(running, "list_connections", "client_properties", "--formatter", "json")
        if done.returncode != 0:
            raise HostsError(f"rabbitmqctl list_connections: {done.stderr.strip()}")
        return Counter(value for connection in json.loads(done.stdout)
                       for key, _, value in connection["client_properties"]
                       if key == "connection_name")

    def kill_node(self, host: Host) -> None:
        """SIGKILL the node (its whole process group: the start script, the Erlang VM and
        its helpers), as a machine's crash would end it."""
        server = self.servers.pop(host.name)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()

    def restart_node(self, host: Host, timeout: float = 120) -> None:
        """Start a killed node again (its epmd still runs) and wait until it rejoined."""
        self.start_node(host, with_epmd=False)
        wait_until(lambda: self.node(host) in self.running_nodes(host),
                   f"{self.node(host)} back in the cluster", timeout)

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
class RedisGroup:
    """A Redis primary on one host, its replica on another, and a Sentinel on each of
    ``sentinel_hosts`` that fails over to the replica when the primary stops answering."""

    network: HostNetwork
    primary: Host
    replica: Host
    sentinel_hosts: list[Host]
    base: Path
    servers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # by host name

    SERVICE = "funtainer"
    QUORUM = 2  # Sentinels that must agree the primary is down
    DOWN_AFTER_MS = 2000

    @property
    def url(self) -> str:
        """``FT_REDIS_URL`` of the platform's processes: through the Sentinels."""
        sentinels = ",".join(f"{h.address}:{SENTINEL_PORT}" for h in self.sentinel_hosts)
        return f"redis+sentinel://{sentinels}/{self.SERVICE}/0"

    def start(self, timeout: float = 30) -> None:
        self.start_server(self.primary)
        self.start_server(self.replica, replica_of=self.primary)
        for host in (self.primary, self.replica):
            wait_until(lambda h=host: redis_answers(h.address), f"Redis on {host.name}",
                       timeout)
        for host in self.sentinel_hosts:
            self._start_sentinel(host)
        for host in self.sentinel_hosts:
            wait_until(lambda h=host: redis_answers(h.address, SENTINEL_PORT),
                       f"Sentinel on {host.name}", timeout)

    def start_server(self, host: Host, replica_of: Host | None = None) -> None:
        data = self.base / f"redis-{host.name}"
        data.mkdir(parents=True, exist_ok=True)
        extra = [] if replica_of is None else ["--replicaof", replica_of.address, str(REDIS_PORT)]
        with open(data / "redis.log", "ab") as log:
            self.servers[host.name] = self.network.started(subprocess.Popen(host.command([
                "redis-server", "--port", str(REDIS_PORT), "--bind", host.address,
                "--protected-mode", "no", "--dir", str(data), "--appendonly", "yes",
                "--save", "", *extra]), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True))

    def _start_sentinel(self, host: Host) -> None:
        data = self.base / f"sentinel-{host.name}"
        data.mkdir(parents=True, exist_ok=True)
        config = data / "sentinel.conf"  # Sentinel rewrites it with what it learns
        config.write_text("\n".join([
            f"port {SENTINEL_PORT}", f"bind {host.address}", "protected-mode no",
            f"dir {data}",
            f"sentinel monitor {self.SERVICE} {self.primary.address} {REDIS_PORT} {self.QUORUM}",
            f"sentinel down-after-milliseconds {self.SERVICE} {self.DOWN_AFTER_MS}",
            f"sentinel failover-timeout {self.SERVICE} 10000",
            "",
        ]))
        with open(data / "sentinel.log", "ab") as log:
            self.network.started(subprocess.Popen(
                host.command(["redis-server", str(config), "--sentinel"]), stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True))

    def current_primary(self) -> Host | None:
        """The host the Sentinels name primary now (asked of the first that answers)."""
        for host in self.sentinel_hosts:
            try:
                client = redis.Redis(host.address, SENTINEL_PORT, socket_timeout=1,
                                     decode_responses=True)
                address = client.sentinel_get_master_addr_by_name(self.SERVICE)
                client.close()
            except redis.RedisError:
                continue
            if address:
                return next((h for h in self.network.hosts if h.address == address[0]), None)
        return None

    def client(self) -> redis.Redis:
        """A synchronous client of the current primary."""
        primary = self.current_primary() or self.primary
        return redis.Redis(primary.address, REDIS_PORT)

    def kill_server(self, host: Host) -> None:
        server = self.servers.pop(host.name)
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
