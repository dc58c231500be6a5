"""`ft up` as a user runs it, under load: SIGKILL each of its children in turn. The platform
must answer again within 15 s each time, `ft up` must still be running with every child back,
and every accepted activation must end with exactly one record. (The rest of the fault suite
restarts processes itself; this is the supervisor a user relies on.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bus.config import Settings
from bus.store import Store
from cli.cluster import free_port, settings_env
from tests.conftest import claimed_redis_db, fresh_vhost
from tests.faults.conftest import FAULT_ENV, STEM_CELLS
from tests.faults.load import ACTIONS, Load, put_action, run_load, sleeper, verdict

ANSWER_WITHIN_S = 15
COMPONENT_OF = {"gateway.app": "gateway", "initializer.service": "initializer",
                "invoker.service": "invoker"}


@dataclass
class FtUp:
    proc: subprocess.Popen[bytes]
    output: Path
    api_host: str
    settings: Settings

    def children(self) -> dict[str, int]:
        """Child name (gateway, initializer, the invoker ids) -> pid, read from /proc."""
        found = {}
        tasks = Path(f"/proc/{self.proc.pid}/task")
        for task in tasks.iterdir():
            for pid in (task / "children").read_text().split():
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
                    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                except OSError:
                    continue  # exited meanwhile
                component = next((c for m, c in COMPONENT_OF.items() if m in cmdline), None)
                if component == "invoker":
                    ids = [e[len(b"FT_INVOKER_ID="):].decode() for e in environ
                           if e.startswith(b"FT_INVOKER_ID=")]
                    component = ids[-1]
                if component is not None:
                    found[component] = int(pid)
        return found

    def text(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture
def up_settings(tmp_path: Path) -> Iterator[Settings]:
    with fresh_vhost("ft-up") as amqp_url, claimed_redis_db() as redis_url:
        yield Settings(amqp_url=amqp_url, redis_url=redis_url, work_dir=tmp_path / "work")


def _start_ft_up(env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    with open(output, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "cli.main", "up", "--quiet",
                                 "--invokers", "2"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def _gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "zombie" in status.read_text().lower()


@pytest.fixture
async def ft_up(up_settings: Settings, tmp_path: Path) -> AsyncIterator[FtUp]:
    port = free_port()
    env = {**os.environ,
           **settings_env(amqp_url=up_settings.amqp_url, redis_url=up_settings.redis_url,
                          port=port, work_dir=up_settings.work_dir, user_memory_mb=1024,
                          stem_cells=STEM_CELLS),
           **FAULT_ENV, "WSK_CONFIG_FILE": str(tmp_path / "wskprops")}
    env.pop("FT_CONFIG", None)
    output = tmp_path / "ft-up.out"
    proc = await asyncio.to_thread(_start_ft_up, env, output)
    up = FtUp(proc, output, f"http://127.0.0.1:{port}", up_settings)
    try:
        deadline = time.monotonic() + 120
        while "Press Ctrl-C to stop." not in up.text():
            assert proc.poll() is None, f"ft up exited:\n{up.text()[-4000:]}"
            assert time.monotonic() < deadline, f"ft up did not start:\n{up.text()[-4000:]}"
            await asyncio.sleep(0.2)
        yield up
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 90)
            except subprocess.TimeoutExpired:
                proc.kill()
        for log in sorted((up_settings.work_dir / "logs").glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")


async def _answers(http: aiohttp.ClientSession, name: str) -> bool:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with http.post(f"{ACTIONS}/{name}?blocking=true&result=true", json={"n": -1},
                             timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return resp.status == 200
    return False


async def test_ft_up_heals_every_child_it_runs(ft_up: FtUp) -> None:
    settings = ft_up.settings
    user, key = f"{settings.guest_uuid}:{settings.guest_key}".split(":")
    store = Store.from_url(settings.redis_url)
    async with aiohttp.ClientSession(
        base_url=ft_up.api_host, headers={"Authorization": aiohttp.encode_basic_auth(user, key)},
    ) as http:
        name, probe = f"heal-{uuid.uuid4().hex[:6]}", f"probe-{uuid.uuid4().hex[:6]}"
        await put_action(http, name, sleeper(0.2), timeout_ms=10_000)
        await put_action(http, probe, sleeper(0), timeout_ms=10_000)
        load, stop = Load(), asyncio.Event()

        async def keep_invoking() -> None:
            while not stop.is_set():
                await run_load(http, name, 16, concurrency=8, load=load)

        invoking = asyncio.create_task(keep_invoking())
        try:
            first = ft_up.children()
            assert set(first) == {"gateway", "initializer", "invoker0", "invoker1"}, first
            for victim in ("invoker0", "gateway", "initializer", "invoker1"):
                before = len(load.accepted)
                while len(load.accepted) < before + 8:  # under load: calls are going on
                    assert not invoking.done(), invoking
                    await asyncio.sleep(0.05)
                before = len(load.accepted)
                pid = ft_up.children()[victim]
                os.kill(pid, signal.SIGKILL)
                killed_at = time.monotonic()
                while not await _answers(http, probe):
                    assert time.monotonic() - killed_at < ANSWER_WITHIN_S, (
                        f"no answer {ANSWER_WITHIN_S} s after {victim} was killed")
                    await asyncio.sleep(0.2)
                while ft_up.children().get(victim) in (None, pid):
                    assert time.monotonic() - killed_at < ANSWER_WITHIN_S, (
                        f"{victim} was not restarted:\n{ft_up.text()[-3000:]}")
                    await asyncio.sleep(0.1)
                print(f"[ft up, {victim} SIGKILL] answering again after "
                      f"{time.monotonic() - killed_at:.1f} s; accepted during: "
                      f"{len(load.accepted) - before}")
                assert ft_up.proc.poll() is None, ft_up.text()[-3000:]
            # Keep the load going a little past the last restart, then let it finish.
            await asyncio.sleep(2)
        finally:
            stop.set()
            await invoking
        result = await verdict(store, "guest", name, load, time.monotonic(), timeout=90)
        print(f"\n[ft up, each child SIGKILLed] {result.line()} refused_calls={load.refused}")
        assert result.accepted > 50
        assert result.lost == 0 and result.duplicated == 0
        assert ft_up.proc.poll() is None
        for victim in ("invoker0", "gateway", "initializer", "invoker1"):
            assert f"{victim} exited with code -9 (SIGKILL)" in ft_up.text()
        assert await _answers(http, probe)
    await store.close()

    # Ctrl-C's signal stops everything cleanly: ft up exits 0 and leaves no child behind.
    children = ft_up.children()
    ft_up.proc.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(ft_up.proc.wait, 90) == 0, ft_up.text()[-3000:]
    assert all(_gone(pid) for pid in children.values())
