"""A whole Funtainer spread over test hosts (cli/hosts.py), as it would run on N machines:

    h1  RabbitMQ node, Redis primary, Redis Sentinel, gateway, initializer
    h2  RabbitMQ node, Redis replica, Redis Sentinel, invoker
    h3  RabbitMQ node, Redis Sentinel, invoker
    h4… invoker

Every durable queue is a quorum queue on the three-node RabbitMQ cluster; each process talks
to the RabbitMQ node of its own host (an invoker on a host without one, to a node chosen round
robin) and knows the others, to move to one of them if its own dies (bus/rabbit_nodes.py).
Invokers use the sandbox backend, each host's with the machine's file system and the host's
network. The direct path is off: it hands work over a Unix socket, which a gateway on another
machine could not reach. Each process serves its metrics on its host's address."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.cluster import LocalCluster, settings_env
from cli.host_services import RabbitCluster, RedisGroup
from cli.hosts import Host, HostNetwork, HostsError

GATEWAY_PORT = 3233
METRICS_PORT = 9100
RABBIT_HOSTS = 3


@dataclass
class HostCluster:
    network: HostNetwork
    base: Path
    user_memory_mb: int = 1024
    stem_cells: list[dict[str, Any]] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.network.count < RABBIT_HOSTS:
            raise HostsError(f"a host cluster needs at least {RABBIT_HOSTS} hosts")
        hosts = self.network.hosts
        self.rabbit = RabbitCluster(self.network, hosts[:RABBIT_HOSTS], self.base / "rabbitmq")
        self.redis = RedisGroup(self.network, hosts[0], hosts[1], hosts[:RABBIT_HOSTS],
                                self.base)
        self.processes = LocalCluster(
            env=settings_env(
                amqp_url=self.rabbit.url(hosts[0]), redis_url=self.redis.url,
                port=GATEWAY_PORT, work_dir=self.base / "work",
                user_memory_mb=self.user_memory_mb, stem_cells=self.stem_cells)
            | {"FT_GATEWAY_HOST": hosts[0].address, "FT_API_HOST": self.api_host,
               "FT_QUORUM_QUEUES": "true", "FT_DIRECT_PATH": "false",
               "FT_CONTAINER_BACKEND": "sandbox", "FT_METRICS_PORT": str(METRICS_PORT),
               "FT_REDIS_REPLICAS_TO_ACK": "1"}
            | self.extra_env,
            invoker_ids=[], log_dir=self.base / "logs", own_process_groups=True)

    @classmethod
    def for_invokers(cls, tag: str, invokers: int, base: Path, **kwargs: Any) -> HostCluster:
        """Hosts enough for ``invokers`` invokers (h2 onwards), at least three."""
        network = HostNetwork(tag, max(RABBIT_HOSTS, 1 + invokers), kwargs.pop("subnet", 0))
        return cls(network, base, **kwargs)

    @property
    def api_host(self) -> str:
        return f"http://{self.network.hosts[0].address}:{GATEWAY_PORT}"

    @property
    def invoker_ids(self) -> list[str]:
        return self.processes.invoker_ids

    def start(self, invokers: int = 1, timeout: float = 120) -> None:
        """Network, services, gateway, initializer and ``invokers`` invokers, all ready."""
        (self.base / "logs").mkdir(parents=True, exist_ok=True)
        self.network.up()
        try:
            self.rabbit.start(timeout)
            self.redis.start()
            first = self.network.hosts[0]
            self._spawn("initializer", "initializer", first)
            self._spawn("gateway", "gateway", first)
            for _ in range(invokers):
                self.add_invoker()
            self.processes.wait_for_gateway(timeout)
            self.wait_for_invokers(timeout)
        except BaseException:
            self.stop()
            raise

    def add_invoker(self) -> str:
        """One more invoker, on the next host that has none (h2, h3, ...)."""
        index = len(self.invoker_ids) + 1
        if index >= self.network.count:
            raise HostsError(f"no host left for invoker {index}")
        host = self.network.hosts[index]
        invoker_id = f"{self.network.tag}-{host.name}"
        self.processes.invoker_ids.append(invoker_id)
        self._spawn(invoker_id, "invoker", host, {"FT_INVOKER_ID": invoker_id})
        return invoker_id

    def _spawn(self, name: str, component: str, host: Host,
               extra: dict[str, str] | None = None) -> None:
        rabbit_hosts = self.rabbit.hosts
        node = host if host in rabbit_hosts else rabbit_hosts[
            self.network.hosts.index(host) % len(rabbit_hosts)]
        self.processes.spawn(name, component, {
            "FT_AMQP_URL": self.rabbit.urls(node), "FT_METRICS_HOST": host.address,
            **(extra or {})}, launcher=host.command([]))
        self.network.started(self.processes.procs[name])

    def wait_for_invokers(self, timeout: float = 120) -> None:
        """Until the initializers report every invoker up (``GET /invokers``' source)."""
        client = self.redis.client()
        try:
            deadline = time.monotonic() + timeout
            while True:
                self.processes.check_alive()
                states = {k.decode(): json.loads(v)["state"]
                          for k, v in client.hgetall("ft:invokers").items()}
                if all(states.get(i) == "up" for i in self.invoker_ids):
                    return
                if time.monotonic() > deadline:
                    raise HostsError(f"invokers not up within {timeout:.0f} s: {states}")
                time.sleep(0.2)
        finally:
            client.close()

    def stop(self) -> None:
        self.processes.stop()
        self.network.down()

    def describe(self) -> str:
        """What runs where, for a person who brought it up."""
        hosts = self.network.hosts
        lines = [f"{h.name} {h.address}: " + ", ".join(self._roles(h)) for h in hosts]
        return "\n".join([*lines, f"API host {self.api_host}"])

    def _roles(self, host: Host) -> list[str]:
        roles = []
        if host in self.rabbit.hosts:
            roles.append(f"RabbitMQ {self.rabbit.node(host)}")
        if host == self.redis.primary:
            roles.append("Redis primary")
        if host == self.redis.replica:
            roles.append("Redis replica")
        if host in self.redis.sentinel_hosts:
            roles.append("Redis Sentinel")
        if host == self.network.hosts[0]:
            roles += ["gateway", "initializer"]
        roles += [f"invoker {i}" for i in self.invoker_ids if i.endswith(f"-{host.name}")]
        roles.append(f"metrics :{METRICS_PORT}")
        return roles
