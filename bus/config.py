"""One settings model for every process, read from ``FT_*`` environment variables
(and optionally a TOML file named by ``FT_CONFIG``)."""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# OpenWhisk's well-known development keys: fine for a local platform, replaced in production
# with `ft admin` (issue 4).
GUEST_UUID = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502"
GUEST_KEY = "123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"


class StemCellSpec(BaseModel):
    """How many prewarmed containers of one runtime kind and memory size an invoker keeps."""

    kind: str
    memory: int = 256
    count: int = 2


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FT_", env_nested_delimiter="__")

    # One RabbitMQ node, or the nodes of a cluster separated by commas, this host's own first
    # (bus/rabbit_nodes.py: a process follows the cluster when its node dies).
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # On a RabbitMQ cluster: every durable queue the platform declares is a quorum queue
    # (replicated on a majority of the nodes). Every process of a cluster must agree.
    quorum_queues: bool = False
    # One Redis, or redis+sentinel://s1:26379,s2:26379,s3:26379/<service>/<db>: the primary
    # the Sentinels name (bus/redis_nodes.py).
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Activation records count as written once this many replicas hold them too (Redis WAIT,
    # at most redis_replica_wait_ms): a failover to a replica then keeps every record a caller
    # was told of. 0 for a Redis without replicas.
    redis_replicas_to_ack: int = 0
    redis_replica_wait_ms: int = 500

    # gateway
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 3233
    api_host: str = "http://127.0.0.1:3233"
    guest_uuid: str = GUEST_UUID
    guest_key: str = GUEST_KEY
    max_blocking_wait_ms: int = 60_000
    # The longest a client may take to send a request's headers (counted from the connection's
    # start or its previous request) and, separately, its body: slow senders are cut off.
    gateway_read_timeout_s: float = 60.0
    # Per-namespace throttles (OpenWhisk's ansible defaults); `ft admin limits set` overrides
    # them for one namespace.
    invocations_per_minute: int = 60
    concurrent_invocations: int = 30
    fires_per_minute: int = 60
    # Verified keys are cached this long per gateway (revocations reach caches at once through
    # Redis pub/sub; this bounds a revoked key's life if that feed is down).
    auth_cache_ttl_s: float = 5.0
    # Action documents are cached as long per gateway for invokes (changes reach caches at once
    # through Redis pub/sub, and the gateway's own at once; this bounds staleness if that feed
    # is down). 0 reads every invoke's action from Redis.
    action_cache_ttl_s: float = 5.0
    # Failed authentications per minute before 429, per client address and per key uuid.
    auth_failures_per_address: int = 60
    auth_failures_per_uuid: int = 20

    # invoker
    # Stable across restarts so an invoker can clean up what its previous life left behind.
    invoker_id: str = "invoker0"
    user_memory_mb: int = 2048
    stem_cells: list[StemCellSpec] = Field(
        default_factory=lambda: [
            StemCellSpec(kind="python:3.11", memory=256, count=2),
            StemCellSpec(kind="nodejs:18", memory=256, count=1),
        ]
    )
    idle_container_ttl_s: float = 600.0
    # Warm containers idle this long give way to missing stem cells.
    stem_cell_reclaim_s: float = 30.0
    container_network: str = "none"
    container_user: str = "1000:1000"
    container_pids_limit: int = 256
    container_nofile: int = 1024
    container_tmpfs_mb: int = 64
    # Each container's proxy directory (socket and log files, bind-mounted at /ft) is a tmpfs of
    # this size, so an action cannot fill the invoker's disk through it; it holds one log file
    # at a time, which the proxy cuts at 20 MB. Mounting needs CAP_SYS_ADMIN; without it (or
    # with 0) the directory is a plain one under work_dir.
    container_io_quota_mb: int = 24
    # CPU time: under contention containers share the CPUs by memory (cpu-shares, as OpenWhisk).
    # Besides, one container may use at most this fraction of the host's CPUs, or its memory's
    # part of them if that is more: an action spinning on every core cannot starve the
    # platform's own processes and its neighbours. 0: no cap.
    container_cpu_cap: float = 0.25
    work_dir: Path = Path("/var/lib/funtainer")
    # How containers are made: "docker" (the engine at docker_url) or "sandbox" (bubblewrap
    # over the runtime images' unpacked root filesystems, invoker/backends/sandbox.py).
    container_backend: str = "docker"
    # The sandbox backend's unpacked images and proxy directories. Sandboxes run as
    # container_user and open them by path, so every directory above must let others pass.
    sandbox_dir: Path = Path("/var/lib/funtainer-sandbox")
    # Whether the sandbox backend forks Python sandboxes from a zygote (an interpreter that
    # has started and imported the proxy once) instead of starting each one's interpreter.
    sandbox_zygote: bool = True
    docker_url: str = "unix:///var/run/docker.sock"
    image_prefix: str = "funtainer"
    heartbeat_interval_s: float = 1.0
    # The direct path: a gateway hands a blocking activation straight to an invoker that holds
    # an idle warm container for it (one socket round trip instead of three broker hops);
    # everything else, and anything the invoker declines, goes through the initializer.
    direct_path: bool = True
    # How long a gateway waits on the direct path beyond the action's time limit before it
    # hands the activation to the initializer's supervision (a frozen invoker).
    direct_margin_s: float = 5.0

    # remote pool (`ft burst`, invoker/remote_pool.py): the other platform's API host and a
    # key there ("uuid:key"); the namespaces whose work may go there (empty: every one).
    burst_api_host: str = ""
    burst_auth: str = ""
    burst_namespaces: list[str] = Field(default_factory=list)

    # initializer
    invoker_dead_after_s: float = 10.0
    # An activation placed on an invoker gets an explicit error record if no completion came
    # within accepted_at + its timeout + this margin (OpenWhisk's forced completion ack).
    activation_deadline_margin_s: float = 60.0
    # Invoker health counts whisk errors and forced timeouts among the last 10 outcomes, but
    # only those younger than this: with no work placed on an unhealthy invoker there would be
    # no new outcomes to make it healthy again (OpenWhisk sends test actions instead).
    invoker_health_window_s: float = 30.0
    # One initializer drains a dead invoker's queue while it holds this lease.
    drain_lease_ttl_ms: int = 10_000
    # Queue feeds: a failed message waits base * 2**(attempt-1) ms (capped) before its retry;
    # one initializer runs a feed while it holds the feed's lease.
    feed_retry_base_ms: int = 1000
    feed_retry_max_ms: int = 60_000
    feed_lease_ttl_ms: int = 10_000

    # asynchronous invocations: retry n waits async_retry_base_ms * 2**(n-1) (Lambda: 1, 2 min)
    async_retry_base_ms: int = 60_000

    # records
    activation_ttl_s: int = 7 * 24 * 3600

    # observability (README "Seeing it work")
    # Off: no process counts anything or sends activation samples (what `python -m bench`
    # compares against).
    metrics_enabled: bool = True
    # An initializer or invoker serves its own Prometheus metrics at
    # http://<metrics_host>:<metrics_port>/metrics (each process needs a port of its own;
    # `ft up` gives them 9100, 9101, ...); 0: not served. The gateway serves its own and the
    # cluster's activation metrics at /metrics on its API port.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    # Keys of these namespaces are the platform's administrators: they read /metrics and see
    # every namespace in the dashboard (`ft admin user create whisk.system` makes one).
    admin_namespaces: list[str] = Field(default_factory=lambda: ["whisk.system"])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    path = os.environ.get("FT_CONFIG")
    if path:
        with open(path, "rb") as f:
            return Settings(**tomllib.load(f))
    return Settings()
