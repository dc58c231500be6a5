"""compose.yaml as a user runs it: the images built on this machine with no registry
(scripts/build-images.sh), `docker-compose up -d`, an action created and invoked through the
published port, `docker-compose down -v`. The per-host-role files of deploy/compose/ are
checked by docker-compose itself (they need several machines to start)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bus.config import GUEST_KEY, GUEST_UUID
from cli.cluster import free_port
from invoker.backends.docker import LABEL

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "deploy" / "compose"
SERVICES = {"rabbitmq", "redis", "gateway", "initializer", "invoker-0", "invoker-1"}


def _compose(*args: str, env: dict[str, str], cwd: Path = ROOT,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker-compose", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _call(api: str, method: str, path: str, body: object) -> tuple[int, object]:
    request = urllib.request.Request(
        f"{api}{path}", method=method, data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"})
    request.add_unredirected_header("Authorization", "Basic " + base64.b64encode(
        f"{GUEST_UUID}:{GUEST_KEY}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


@pytest.fixture(scope="module")
def images() -> None:
    built = subprocess.run(["bash", "scripts/build-images.sh"], cwd=ROOT, capture_output=True,
                           text=True, timeout=900)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]


@pytest.fixture
def project(images: None, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    prefix = f"ftc{secrets.token_hex(3)}-"
    env = {**os.environ, "COMPOSE_PROJECT_NAME": prefix.rstrip("-"),
           "FT_PUBLISH": f"127.0.0.1:{port}", "FT_HOST_WORK_DIR": str(tmp_path / "work"),
           "FT_INVOKER_PREFIX": prefix}
    (tmp_path / "work").mkdir()
    try:
        yield f"http://127.0.0.1:{port}", env
    finally:
        down = _compose("down", "-v", "--timeout", "90", env=env)
        assert down.returncode == 0, down.stderr
    # The invokers removed their runtime containers as they stopped.
    for invoker in (f"{prefix}0", f"{prefix}1"):
        left = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={LABEL}={invoker}"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert not left, invoker


def test_compose_yaml_runs_the_platform(project: tuple[str, dict[str, str]]) -> None:
    api, env = project
    up = _compose("up", "-d", env=env)
    assert up.returncode == 0, up.stderr
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{api}/api/v1", timeout=2):
                break
        except (OSError, urllib.error.URLError):
            assert time.monotonic() < deadline, _compose("logs", "--tail", "40", env=env).stdout
            time.sleep(0.5)
    code = "def main(args):\n    return {'sum': sum(args.get('xs', []))}\n"
    status, _ = _call(api, "PUT", "/api/v1/namespaces/_/actions/adder",
                      {"exec": {"kind": "python:3.11", "code": code}})
    assert status == 200
    status, record = _call(api, "POST", "/api/v1/namespaces/_/actions/adder?blocking=true",
                           {"xs": [1, 2, 39]})
    assert status == 200, record
    assert isinstance(record, dict) and record["response"]["result"] == {"sum": 42}
    running = _compose("ps", "--services", "--filter", "status=running", env=env)
    assert set(running.stdout.split()) == SERVICES, running.stdout
    # Runtime containers on the host's engine, made by the invokers in their containers.
    invoker = env["FT_INVOKER_PREFIX"] + "0"
    made = subprocess.run(["docker", "ps", "-q", "--filter", f"label={LABEL}={invoker}"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert made


@pytest.mark.parametrize("role", ["services", "control", "invoker", "burst"])
def test_each_host_role_file_is_valid_compose(role: str) -> None:
    env = {**os.environ, "FT_BURST_API_HOST": "https://other:3233", "FT_BURST_AUTH": "u:k"}
    checked = _compose("--env-file", "cluster.env", "-f", f"{role}.yaml", "config", env=env,
                       cwd=ROLES, timeout=60)
    assert checked.returncode == 0, checked.stderr
    assert "network_mode: host" in checked.stdout  # they reach each other at host addresses
