"""The Node.js runtime image for real: built with `build_images()` (debootstrap base with
Debian's nodejs, docker import, docker build), run with the invoker's container flags, spoken
to over the bind-mounted socket."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import statistics
import tempfile
import textwrap
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.types import LogConfig, Ulimit

from runtimes.build import build_images
from runtimes.kinds import image_for, resolve_kind
from tests.unit.test_proxy import ProxyConnection, read_log, wait_for_socket

KIND = "nodejs:18"
API_HOST = "http://gateway.example:3233"


@pytest.fixture(scope="module")
def image() -> str:
    assert resolve_kind("nodejs:default") == resolve_kind("nodejs") == KIND
    images = build_images(progress=print)
    assert image_for(KIND) in images
    return image_for(KIND)


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@contextmanager
def node_container(engine: docker.DockerClient, image: str) -> Iterator[tuple[Path, Any]]:
    """A container started as the invoker starts one (invoker/backends/docker.py's host
    config, with its default settings); yields (proxy dir, container)."""
    io_dir = Path(tempfile.mkdtemp(prefix="ftn-"))
    (io_dir / "logs").mkdir()
    for path in (io_dir, io_dir / "logs"):
        os.chown(path, 1000, 1000)
    container = None
    try:
        start = time.monotonic()
        container = engine.containers.run(
            image,
            detach=True,
            name=f"ft-test-node-{uuid.uuid4().hex[:8]}",
            labels={"funtainer.test": "node-runtime"},
            user="1000:1000",
            environment={"__OW_API_HOST": API_HOST, "FT_PROXY_DIR": "/ft"},
            volumes={str(io_dir): {"bind": "/ft", "mode": "rw"}},
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": "rw,size=64m,mode=1777"},
            mem_limit="256m",
            memswap_limit="256m",
            pids_limit=256,
            ulimits=[Ulimit(name="nofile", soft=1024, hard=1024)],
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            cpu_shares=128,
            init=True,
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        )
        created = time.monotonic()
        wait_for_socket(io_dir / "proxy.sock", timeout=30)
        answered = time.monotonic()
        print(
            f"\n[nodejs:18] docker run -> socket answering: {(answered - start) * 1000:.0f} ms "
            f"(create+start {(created - start) * 1000:.0f} ms, "
            f"then proxy {(answered - created) * 1000:.0f} ms)"
        )
        yield io_dir, container
    finally:
        if container is not None:
            container.remove(force=True)
        shutil.rmtree(io_dir, ignore_errors=True)


PROBE = textwrap.dedent(
    """
    const { execSync } = require('child_process');
    const fs = require('fs');
    const net = require('net');
    console.log('initializing');

    function writable(dir) {
      try {
        fs.writeFileSync(dir + '/probe', 'x');
        return true;
      } catch {
        return false;
      }
    }

    function reachable(host, port) {
      return new Promise((resolve) => {
        const socket = net.connect({ host, port, timeout: 1000 });
        socket.on('connect', () => { socket.destroy(); resolve(true); });
        socket.on('timeout', () => { socket.destroy(); resolve(false); });
        socket.on('error', () => resolve(false));
      });
    }

    async function main(args) {
      if (args.noop) return {};
      console.log('hello from the action', args.n);
      console.error('a warning');
      execSync('echo hello from a child', { stdio: 'inherit' });
      execSync('echo child error > /dev/stderr', { stdio: 'inherit' });
      return {
        uid: process.getuid(),
        node: process.versions.node.split('.')[0],
        root_writable: writable('/'),
        tmp_writable: writable('/tmp'),
        network: await reachable('10.1.2.3', 80),
        activation: process.env.__OW_ACTIVATION_ID,
        api_host: process.env.__OW_API_HOST,
      };
    }
    """
)


def test_node_runtime_runs_actions(engine: docker.DockerClient, image: str) -> None:
    with node_container(engine, image) as (io_dir, container):
        conn = ProxyConnection(io_dir / "proxy.sock")
        try:
            assert conn.init(PROBE, "act-init") == (200, {"ok": True})
            status, result = conn.run({"n": 7}, "act-1", namespace="guest")
            assert status == 200, result
            assert result == {
                "uid": 1000,
                "node": "18",
                "root_writable": False,
                "tmp_writable": True,
                "network": False,
                "activation": "act-1",
                "api_host": API_HOST,
            }
            lines = read_log(io_dir, "act-1")
            assert [text for stream, text in lines if stream == "stdout"] == [
                "initializing",
                "hello from the action 7",
                "hello from a child",
            ]
            assert [text for stream, text in lines if stream == "stderr"] == [
                "a warning",
                "child error",
            ]
            assert (io_dir / "logs" / "act-1.log").stat().st_uid == 1000

            # The warm path: a no-op activation's round trip over the socket.
            timings = []
            for i in range(500):
                begin = time.perf_counter()
                body = b'{"value":{"noop":true},"activation_id":"w%d"}' % i
                status, _, _ = conn.request("POST", "/run", body)
                timings.append(time.perf_counter() - begin)
                assert status == 200
            assert not list((io_dir / "logs").glob("w*.log"))  # nothing logged, no files
            print(
                f"[nodejs:18] warm no-op /run round trip: median "
                f"{statistics.median(timings) * 1e6:.0f} us, "
                f"p99 {sorted(timings)[int(len(timings) * 0.99)] * 1e6:.0f} us"
            )
            memory = container.stats(stream=False)["memory_stats"].get("usage", 0)
            print(f"[nodejs:18] container memory after the runs: {memory / 2**20:.1f} MiB")
        finally:
            conn.close()
        # The action's output went to the log files, not to the engine's log.
        engine_log = container.logs().decode()
        assert "listening on /ft/proxy.sock" in engine_log
        assert "hello from the action" not in engine_log
        # SIGTERM reaches the supervisor, which stops the worker: `docker stop` does not wait.
        begin = time.monotonic()
        container.stop(timeout=10)
        assert time.monotonic() - begin < 5


def _zip(files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return base64.b64encode(buffer.getvalue()).decode()


def test_node_runtime_runs_zip_actions(engine: docker.DockerClient, image: str) -> None:
    """The openwhisk npm client's zip action: package.json + index.js exporting main."""
    code = _zip(
        {
            "package.json": json.dumps({"name": "hello", "version": "1.0.0", "main": "index.js"}),
            "index.js": "function main() {\n  return { hello: 'world' };\n}\nexports.main = main;",
        }
    )
    with node_container(engine, image) as (io_dir, _):
        conn = ProxyConnection(io_dir / "proxy.sock")
        try:
            assert conn.init(code, "zip-init", binary=True) == (200, {"ok": True})
            assert conn.run({}, "zip-1") == (200, {"hello": "world"})
        finally:
            conn.close()


def test_node_runtime_worker_crash(engine: docker.DockerClient, image: str) -> None:
    """An action that kills its process: the invoker sees the connection drop and the
    container stop, and still finds what the activation logged."""
    with node_container(engine, image) as (io_dir, container):
        conn = ProxyConnection(io_dir / "proxy.sock")
        try:
            conn.init("function main() {\n  console.log('going down');\n  process.exit(7);\n}\n")
            with pytest.raises((AssertionError, ConnectionError, OSError)):
                conn.run({}, "crash-1")
        finally:
            conn.close()
        assert container.wait(timeout=10)["StatusCode"] == 7
        assert read_log(io_dir, "crash-1") == [("stdout", "going down")]
