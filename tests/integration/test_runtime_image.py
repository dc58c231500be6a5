"""The runtime image for real: built with `build_images()` (debootstrap base, docker import,
docker build), run with the invoker's hardening flags, spoken to over the bind-mounted socket."""

from __future__ import annotations

import base64
import io
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

import docker
import pytest
from docker.types import Ulimit

from runtimes.build import build_images
from runtimes.kinds import image_for
from tests.unit.test_proxy import ProxyConnection, read_log, wait_for_socket

KIND = "python:3.11"


@pytest.fixture(scope="module")
def image() -> str:
    images = build_images(progress=print)
    assert image_for(KIND) in images
    return image_for(KIND)


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@contextmanager
def proxy_container(engine: docker.DockerClient, image: str) -> Iterator[tuple[Path, object]]:
    """A container started as the invoker starts one; yields (proxy dir, container)."""
    io_dir = Path(tempfile.mkdtemp(prefix="ftr-"))
    os.chown(io_dir, 1000, 1000)
    container = None
    try:
        start = time.monotonic()
        container = engine.containers.run(
            image,
            detach=True,
            name=f"ft-test-runtime-{uuid.uuid4().hex[:8]}",
            labels={"funtainer.test": "runtime-image"},
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": "size=64m"},
            user="1000:1000",
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            mem_limit="256m",
            memswap_limit="256m",
            pids_limit=256,
            ulimits=[Ulimit(name="nofile", soft=1024, hard=1024)],
            volumes={str(io_dir): {"bind": "/ft", "mode": "rw"}},
        )
        created = time.monotonic()
        wait_for_socket(io_dir / "proxy.sock", timeout=30)
        answered = time.monotonic()
        print(
            f"\ndocker run -> socket answering: {(answered - start) * 1000:.0f} ms "
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
    import os, socket, subprocess, sys
    print("initializing")

    def writable(path):
        try:
            with open(os.path.join(path, "probe"), "w") as f:
                f.write("x")
            return True
        except OSError:
            return False

    def main(args):
        if args.get("noop"):
            return {}
        print("hello from the action", args["n"])
        subprocess.run(["echo", "hello from a child"], check=True)
        try:
            socket.create_connection(("10.1.2.3", 80), timeout=1)
            network = True
        except OSError:
            network = False
        return {
            "uid": os.getuid(),
            "python": sys.version_info[:2],
            "root_writable": writable("/"),
            "tmp_writable": writable("/tmp"),
            "network": network,
            "activation": os.environ["__OW_ACTIVATION_ID"],
            "api_host": os.environ.get("__OW_API_HOST"),
            "json_ok": __import__("json").dumps({"a": 1}),
        }
    """
)


def test_runtime_image_runs_actions(engine: docker.DockerClient, image: str) -> None:
    with proxy_container(engine, image) as (io_dir, container):
        conn = ProxyConnection(io_dir / "proxy.sock")
        try:
            assert conn.init(PROBE, "act-init") == (200, {"ok": True})
            status, result = conn.run({"n": 7}, "act-1", namespace="guest")
            assert status == 200, result
            assert result == {
                "uid": 1000,
                "python": [3, 11],
                "root_writable": False,
                "tmp_writable": True,
                "network": False,
                "activation": "act-1",
                "api_host": None,
                "json_ok": '{"a": 1}',
            }
            lines = read_log(io_dir, "act-1")
            assert [text for stream, text in lines if stream == "stdout"] == [
                "initializing",
                "hello from the action 7",
                "hello from a child",
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
            print(
                f"warm no-op /run round trip: median "
                f"{statistics.median(timings) * 1e6:.0f} us, "
                f"p99 {sorted(timings)[int(len(timings) * 0.99)] * 1e6:.0f} us"
            )
        finally:
            conn.close()
        # The action's output went to the log files, not to the engine's log.
        engine_log = container.logs().decode()
        assert "listening on /ft/proxy.sock" in engine_log
        assert "hello from the action" not in engine_log
        # SIGTERM is handled although the proxy is PID 1: `docker stop` does not wait 10 s.
        begin = time.monotonic()
        container.stop(timeout=10)
        assert time.monotonic() - begin < 5


def test_runtime_image_runs_zip_actions(engine: docker.DockerClient, image: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("__main__.py", "import helper\ndef main(a):\n    return helper.f(a)\n")
        archive.writestr(
            "helper.py", "import os\ndef f(a):\n    return {'cwd': os.getcwd(), **a}\n"
        )
    code = base64.b64encode(buffer.getvalue()).decode()
    with proxy_container(engine, image) as (io_dir, _):
        conn = ProxyConnection(io_dir / "proxy.sock")
        try:
            assert conn.init(code, binary=True) == (200, {"ok": True})
            status, result = conn.run({"x": 1})
            assert status == 200
            assert result["x"] == 1 and result["cwd"].startswith("/tmp/action-")
        finally:
            conn.close()


def test_unchanged_sources_do_not_rebuild(engine: docker.DockerClient, image: str) -> None:
    before = engine.images.get(image).id
    begin = time.monotonic()
    build_images(progress=print)
    assert time.monotonic() - begin < 5  # ~0.1 s; generous for a loaded machine
    assert engine.images.get(image).id == before
