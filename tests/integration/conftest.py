"""A whole cluster for end-to-end tests: gateway, initializer and two invokers as real
processes on the session's own RabbitMQ vhost and Redis database, with real containers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aio_pika.abc import AbstractIncomingMessage

from bus.broker import HEALTH, Broker, settle
from bus.codec import unpack
from bus.config import Settings
from bus.models import Heartbeat
from cli.up import COMPONENTS

STEM_CELLS = [{"kind": "python:3.11", "memory": 256, "count": 2}]


@dataclass
class Cluster:
    api_host: str
    auth: str
    settings: Settings
    invoker_ids: list[str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def auth_header(self) -> dict[str, str]:
        user, key = self.auth.split(":", 1)
        return {"Authorization": aiohttp.encode_basic_auth(user, key)}

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text()[-4000:]}" for p in sorted(self.log_dir.glob("*.log"))
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(
    name: str, env: dict[str, str], log_dir: Path, component: str
) -> subprocess.Popen[bytes]:
    log = open(log_dir / f"{name}.log", "wb")  # the child process owns it
    return subprocess.Popen([sys.executable, "-c", COMPONENTS[component]], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


async def _wait_for_invokers(broker: Broker, ids: list[str], timeout: float) -> None:
    """Until every invoker has sent a heartbeat showing all its stem cells prewarmed."""
    ready: set[str] = set()
    done = asyncio.Event()
    wanted = sum(c["count"] for c in STEM_CELLS)

    async def on_beat(message: AbstractIncomingMessage) -> None:
        beat = unpack(message.body, Heartbeat)
        await settle(message)
        if beat.invoker_id in ids and sum(beat.prewarmed.values()) >= wanted:
            ready.add(beat.invoker_id)
            if ready == set(ids):
                done.set()

    queue = await broker.consume(None, on_beat, prefetch=50, bind_to=HEALTH)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        await broker.stop_consuming(queue)


@pytest.fixture(scope="session")
async def cluster(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    port = _free_port()
    api_host = f"http://127.0.0.1:{port}"
    log_dir = tmp_path_factory.mktemp("cluster-logs")
    tag = uuid.uuid4().hex[:6]
    invoker_ids = [f"t{tag}-0", f"t{tag}-1"]
    env = {
        **os.environ,
        "FT_AMQP_URL": settings.amqp_url,
        "FT_REDIS_URL": settings.redis_url,
        "FT_GATEWAY_PORT": str(port),
        "FT_API_HOST": api_host,
        "FT_WORK_DIR": str(settings.work_dir),
        "FT_USER_MEMORY_MB": "1024",
        "FT_STEM_CELLS": json.dumps(STEM_CELLS),
    }
    c = Cluster(api_host, f"{settings.guest_uuid}:{settings.guest_key}", settings, invoker_ids,
                log_dir)
    c.procs["initializer"] = _spawn("initializer", env, log_dir, "initializer")
    for iid in invoker_ids:
        c.procs[iid] = _spawn(iid, {**env, "FT_INVOKER_ID": iid}, log_dir, "invoker")
    c.procs["gateway"] = _spawn("gateway", env, log_dir, "gateway")
    broker = await Broker.connect(settings.amqp_url, name="test-cluster-watch")
    try:
        await _wait_for_invokers(broker, invoker_ids, timeout=90)
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"{api_host}/api/v1") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("gateway did not start\n" + c.logs())
    except TimeoutError:
        pytest.fail("invokers did not get ready\n" + c.logs())
    finally:
        await broker.close()
    yield c
    for proc in c.procs.values():
        proc.terminate()
    for name, proc in c.procs.items():
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            proc.kill()
            print(f"{name} had to be killed")


@pytest.fixture
async def http(cluster: Cluster) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=cluster.api_host,
                                     headers=cluster.auth_header) as s:
        yield s
