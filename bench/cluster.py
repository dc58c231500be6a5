"""One way for every benchmark to get a running platform: a RabbitMQ vhost and a Redis database
of its own (claimed exactly as the test suites claim theirs, so benches and tests run side by
side), a LocalCluster with one invoker, stem cells up, and an authenticated HTTP session.
Plus the few gateway calls the benchmarks make."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bus.broker import Broker
from bus.config import GUEST_KEY, GUEST_UUID, Settings
from bus.store import Store
from cli.cluster import ClusterError, LocalCluster, free_port, settings_env
from invoker.service import make_backend
from tests.cluster_fixtures import wait_for_stem_cells
from tests.conftest import claimed_redis_db, fresh_vhost

NS = "guest"
NOOP = "def main(args):\n    return {'ok': True}\n"
PYTHON = "python:3.11"


@dataclass(frozen=True)
class Services:
    amqp_url: str
    redis_url: str


@contextmanager
def claimed_services(prefix: str) -> Iterator[Services]:
    """A fresh vhost and a claimed, flushed Redis database, both released afterwards."""
    with fresh_vhost(prefix) as amqp_url, claimed_redis_db() as redis_url:
        yield Services(amqp_url, redis_url)


@dataclass
class BenchCluster:
    processes: LocalCluster
    services: Services
    store: Store
    broker: Broker
    http: aiohttp.ClientSession

    @property
    def invoker_id(self) -> str:
        return self.processes.invoker_ids[0]

    def pids(self) -> dict[str, int]:
        """Process role -> pid (the invoker is called "invoker" whatever its id)."""
        return {("invoker" if name == self.invoker_id else name): proc.pid
                for name, proc in self.processes.procs.items()}

    async def wait_for_stem_cells(self, wanted: int, timeout: float = 120) -> None:
        await wait_for_stem_cells(self.broker, self.processes.invoker_ids, timeout, wanted)

    async def create_action(self, name: str, code: str = NOOP, memory: int = 256) -> None:
        body = {"exec": {"kind": PYTHON, "code": code}, "limits": {"memory": memory}}
        async with self.http.put(f"/api/v1/namespaces/_/actions/{name}?overwrite=true",
                                 json=body) as r:
            if r.status != 200:
                raise RuntimeError(f"creating {name}: {r.status} {await r.text()}")

    async def invoke_blocking(self, name: str) -> dict[str, Any]:
        async with self.http.post(f"/api/v1/namespaces/_/actions/{name}?blocking=true",
                                  json={}) as r:
            body = await r.json()
            if r.status != 200:
                raise RuntimeError(f"invoking {name}: {r.status} {body}")
            return body  # type: ignore[no-any-return]

    async def invoke_async(self, name: str) -> str | None:
        """The activation id, or None if the gateway did not accept the invocation."""
        async with self.http.post(f"/api/v1/namespaces/_/actions/{name}", json={}) as r:
            if r.status != 202:
                await r.read()
                return None
            return str((await r.json())["activationId"])


@asynccontextmanager
async def running_cluster(
    prefix: str, *, stem_cells: list[dict[str, Any]], user_memory_mb: int = 2048,
    extra_env: dict[str, str] | None = None, backend: str = "docker",
) -> AsyncIterator[BenchCluster]:
    """Gateway, initializer and one invoker (on ``backend``) on services of their own, stem
    cells prewarmed."""
    tag = uuid.uuid4().hex[:6]
    work_dir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    with claimed_services(prefix) as services:
        processes = LocalCluster(
            env=settings_env(amqp_url=services.amqp_url, redis_url=services.redis_url,
                             port=free_port(), work_dir=work_dir, user_memory_mb=user_memory_mb,
                             stem_cells=stem_cells)
            | {"FT_CONTAINER_BACKEND": backend} | (extra_env or {}),
            invoker_ids=[f"{prefix}-{tag}"], log_dir=work_dir,
        )
        processes.start()
        broker = store = http = None
        try:
            broker = await Broker.connect(services.amqp_url, name=f"{prefix}-watch")
            wanted = sum(int(cell["count"]) for cell in stem_cells)
            await wait_for_stem_cells(broker, processes.invoker_ids, 120, wanted)
            await asyncio.to_thread(processes.wait_for_gateway)
            store = Store.from_url(services.redis_url)
            auth = {"Authorization": aiohttp.encode_basic_auth(GUEST_UUID, GUEST_KEY)}
            # No connection cap: the benches choose their own concurrency.
            http = aiohttp.ClientSession(base_url=processes.api_host, headers=auth,
                                         connector=aiohttp.TCPConnector(limit=0))
            yield BenchCluster(processes, services, store, broker, http)
        except (ClusterError, TimeoutError):
            print(processes.logs())
            raise
        finally:
            if http is not None:
                await http.close()
            if store is not None:
                await store.close()
            if broker is not None:
                await broker.close()
            # An invoker removes its containers as it stops; a hundred of them on a busy
            # machine take a while, so it gets time for that.
            await asyncio.to_thread(processes.stop, 180)
            # Whatever an invoker killed on the way out left behind (containers under its
            # id, tmpfs mounts under work_dir) goes too: only ever our own.
            await make_backend(Settings(invoker_id=processes.invoker_ids[0],
                                        work_dir=work_dir, container_backend=backend)).close()
            shutil.rmtree(work_dir, ignore_errors=True)
