"""Redis as a process reaches it: one server, or whichever server Redis Sentinel names primary.

``FT_REDIS_URL`` is a plain ``redis://host:6379/0``, or, for a primary with replicas watched
by Sentinels, ``redis+sentinel://[:password@]s1:26379,s2:26379,s3:26379/<service>[/<db>]``
(the Sentinels' addresses, the name they monitor the primary by, the database). Through
Sentinel every new connection asks the Sentinels for the current primary, so after a failover
the next command goes to the promoted replica; a command whose connection failed is sent
again, on a new connection, until the failover is over.

Replication is asynchronous, so a primary that dies may take with it writes it had already
acknowledged. ``ReplicaAcks`` closes that gap for activation records: their writes are
followed by ``WAIT``, so a caller learns of a record only once a replica holds it too."""

from __future__ import annotations

import logging
import time
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff

log = logging.getLogger(__name__)

SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_PORT = 26379
# Past this many commands in flight the next waits for a connection (plain pools raise "Too
# many connections", which turned a burst of requests into 500s).
MAX_CONNECTIONS = 64
POOL_WAIT_S = 30.0
SENTINEL_TIMEOUT_S = 1.0
FAILOVER_RETRIES = 16  # about 7 s of retries, backing off to 0.5 s between them


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (a new connection goes to the current primary) that waits for a free
    connection as ``BlockingConnectionPool`` does."""


def redis_client(url: str) -> aioredis.Redis:
    # hiredis is picked automatically when installed; RESP2 keeps replies as plain bytes.
    if urlsplit(url).scheme != SENTINEL_SCHEME:
        return aioredis.Redis.from_pool(BlockingConnectionPool.from_url(
            url, protocol=2, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT_S))
    sentinels, service, db, password = parse_sentinel_url(url)
    sentinel = Sentinel(sentinels, socket_timeout=SENTINEL_TIMEOUT_S,
                        sentinel_kwargs={"socket_timeout": SENTINEL_TIMEOUT_S})
    # A command whose connection failed is sent again, on a new connection to whichever
    # server the Sentinels name then, for as long as a failover takes: the Sentinels call
    # the primary down after 2 s and promote the replica about a second later. Without
    # this, a gateway answers 503 throughout (a command sent twice is harmless here: the
    # writes that matter are first-wins, the counters only throttle).
    return sentinel.master_for(
        service, connection_pool_class=_BlockingSentinelPool, db=db, password=password,
        protocol=2, max_connections=MAX_CONNECTIONS, timeout=POOL_WAIT_S,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), FAILOVER_RETRIES))


async def close_client(client: aioredis.Redis) -> None:
    await client.aclose()
    sentinel = getattr(client.connection_pool, "sentinel_manager", None)
    if sentinel is not None:
        await sentinel.aclose()


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None]:
    """``redis+sentinel://[:pw@]h1:26379,h2/<service>[/<db>]`` -> (sentinels, service, db,
    password)."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    password = unquote(userinfo.partition(":")[2]) or None if userinfo else None
    sentinels = []
    for address in filter(None, hosts.split(",")):
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "")
        sentinels.append((host, int(port or SENTINEL_PORT)))
    path = [p for p in parts.path.split("/") if p]
    if not sentinels or not 1 <= len(path) <= 2:
        raise ValueError(f"expected {SENTINEL_SCHEME}://host:port,.../<service>[/<db>]")
    return sentinels, path[0], int(path[1]) if len(path) == 2 else 0, password


class ReplicaAcks:
    """How many replicas must hold a record before its write counts as done (0: none), and
    whether they are there to ask. With fewer replicas connected than wanted (one died, or a
    failover left the new primary alone), ``WAIT`` would hold every write for its whole
    timeout; after one short answer, writes stop waiting for ``RETRY_AFTER_S`` (as Redis
    without replicas would behave), then ask again."""

    RETRY_AFTER_S = 5.0

    def __init__(self, wanted: int, timeout_ms: int) -> None:
        self.wanted = wanted
        self.timeout_ms = timeout_ms
        self._skip_until = 0.0

    def should_wait(self) -> bool:
        return self.wanted > 0 and time.monotonic() >= self._skip_until

    def acked(self, replicas: int) -> None:
        if replicas < self.wanted:
            log.warning("records held by %d of %d replicas within %d ms: not waiting for "
                        "replicas for %.0f s", replicas, self.wanted, self.timeout_ms,
                        self.RETRY_AFTER_S)
            self._skip_until = time.monotonic() + self.RETRY_AFTER_S
