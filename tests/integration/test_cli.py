"""``ft`` end to end: the real CLI, as a separate process with its own ``.wskprops``, against the
real cluster (gateway, initializer, invokers, containers)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.cluster_fixtures import Cluster
from tests.integration.conftest import BACKEND_NEUTRAL

REPO_ROOT = Path(__file__).resolve().parents[2]
ACTIVATION_ID = re.compile(r"[0-9a-f]{32}")

GREET = """\
def main(args):
    name = args.get("name", "stranger")
    print("greeting " + name)
    return {"greeting": "Hello " + name}
"""
FAIL = 'def main(args):\n    return {"error": "bad input"}\n'

Ft = Callable[..., Awaitable[subprocess.CompletedProcess[str]]]


@pytest.fixture
async def ft(cluster: Cluster, tmp_path: Path) -> Ft:
    """Runs ``python -m cli.main ARGS`` with a private settings file pointing at the cluster."""
    env = {**os.environ, "WSK_CONFIG_FILE": str(tmp_path / "wskprops")}

    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "cli.main", *args],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = await run("property", "set", "--apihost", cluster.api_host, "--auth", cluster.auth)
    assert done.returncode == 0, done.stderr
    assert f"ok: whisk API host set to {cluster.api_host}" in done.stdout
    return run


def _code_file(tmp_path: Path, code: str) -> str:
    path = tmp_path / f"action-{uuid.uuid4().hex[:6]}.py"
    path.write_text(code)
    return str(path)


async def _poll(
    ft: Ft,
    *args: str,
    until: Callable[[subprocess.CompletedProcess[str]], bool],
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Non-blocking invokes finish in the background; the user's way to see them is to ask."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        done = await ft(*args)
        if until(done):
            return done
        if loop.time() > deadline:
            raise AssertionError(f"ft {' '.join(args)} never matched: {done.stdout}{done.stderr}")
        await asyncio.sleep(0.2)


async def test_action_lifecycle_through_ft(ft: Ft, tmp_path: Path) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"

    created = await ft("action", "create", name, _code_file(tmp_path, GREET))
    assert (created.returncode, created.stdout) == (0, f"ok: created action {name}\n"), created

    result = await ft("action", "invoke", name, "-r", "-p", "name", "Ada")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"greeting": "Hello Ada"}

    invoked = await ft("action", "invoke", name, "-p", "name", "Bob")
    assert invoked.returncode == 0, invoked.stderr
    match = re.fullmatch(
        rf"ok: invoked /_/{name} with id ({ACTIVATION_ID.pattern})\n", invoked.stdout
    )
    assert match, invoked.stdout
    activation_id = match.group(1)

    # --last is the newest activation of the namespace: wait until that is Bob's.
    await _poll(
        ft,
        "activation",
        "get",
        "--last",
        "activationId",
        until=lambda done: done.returncode == 0 and f'"{activation_id}"' in done.stdout,
    )
    last_result = await ft("activation", "result", "--last")
    assert last_result.returncode == 0, last_result.stderr
    assert json.loads(last_result.stdout) == {"greeting": "Hello Bob"}
    logs = await _poll(
        ft,
        "activation",
        "logs",
        "--last",
        "--strip",
        until=lambda done: done.returncode == 0 and bool(done.stdout),
    )
    assert logs.stdout == "greeting Bob\n"
    raw_logs = await ft("activation", "logs", activation_id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\S+Z\s+stdout: greeting Bob\n", raw_logs.stdout), (
        raw_logs.stdout
    )

    listed = await ft("activation", "list", name)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.startswith("Datetime") and header.split()[-1] == "Entity"
    bob = next(row for row in rows if activation_id in row)
    assert re.search(rf" python:3\.11 +(cold|warm) +\S+ +success +\S+/{name}:0\.0\.1$", bob), bob
    assert len(rows) == 2  # Ada's and Bob's

    actions = await ft("action", "list")
    assert actions.returncode == 0, actions.stderr
    assert actions.stdout.startswith("actions\n")
    assert re.search(rf"^/\S+/{name} +private python:3\.11$", actions.stdout, re.M), actions.stdout

    got = await ft("action", "get", name)
    assert got.returncode == 0, got.stderr
    assert got.stdout.startswith(f"ok: got action {name}\n")
    assert json.loads(got.stdout.split("\n", 1)[1])["name"] == name

    deleted = await ft("action", "delete", name)
    assert (deleted.returncode, deleted.stdout) == (0, f"ok: deleted action {name}\n")

    gone = await ft("action", "get", name)
    assert gone.returncode != 0
    assert gone.stdout == ""
    assert len(gone.stderr.splitlines()) == 1
    assert gone.stderr.startswith(
        f"error: Unable to get action '{name}': The requested resource does not exist. (code "
    ), gone.stderr


async def test_failures_through_ft(ft: Ft, tmp_path: Path) -> None:
    name = f"cli-fail-{uuid.uuid4().hex[:8]}"
    code_file = _code_file(tmp_path, FAIL)
    assert (await ft("action", "create", name, code_file)).returncode == 0

    again = await ft("action", "create", name, code_file)
    assert again.returncode == 2
    assert re.fullmatch(
        rf"error: Unable to create action '{name}': resource already exists \(code \S+\)\n",
        again.stderr,
    ), again.stderr

    # An application error is printed (on stderr, like wsk) and fails the command.
    result_only = await ft("action", "invoke", name, "-r")
    assert (result_only.returncode, result_only.stdout) == (2, "")
    assert json.loads(result_only.stderr) == {"error": "bad input"}

    blocking = await ft("action", "invoke", name, "--blocking")
    assert (blocking.returncode, blocking.stdout) == (2, "")
    header, body = blocking.stderr.split("\n", 1)
    assert re.fullmatch(rf"ok: invoked /_/{name} with id {ACTIVATION_ID.pattern}", header)
    record = json.loads(body)
    assert record["response"]["status"] == "application error"
    assert record["response"]["result"] == {"error": "bad input"}
    assert header.endswith(record["activationId"])

    assert (await ft("action", "delete", name)).returncode == 0


@BACKEND_NEUTRAL
async def test_copy_and_web_secure_as_wsk_takes_them(
    ft: Ft, tmp_path: Path, cluster: Cluster
) -> None:
    source, copy, web = (f"cli-{role}-{uuid.uuid4().hex[:6]}" for role in ("src", "cp", "web"))
    assert (await ft("action", "create", source, _code_file(tmp_path, GREET),
                     "-p", "name", "Src", "-m", "128")).returncode == 0
    copied = await ft("action", "create", copy, source, "--copy", "-a", "note", "copied")
    assert copied.returncode == 0, copied.stderr
    result = await ft("action", "invoke", copy, "-r")
    assert json.loads(result.stdout) == {"greeting": "Hello Src"}  # its parameters came too
    assert (await ft("action", "create", web, _code_file(tmp_path, GREET), "--web", "true",
                     "--web-secure", "s3cret")).returncode == 0
    url = f"{cluster.api_host}/api/v1/web/guest/default/{web}.json"
    actions = f"{cluster.api_host}/api/v1/namespaces/_/actions"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.status == 401
        async with http.get(url, headers={"X-Require-Whisk-Auth": "s3cret"}) as resp:
            assert resp.status == 200 and (await resp.json())["greeting"] == "Hello stranger"
        async with http.get(f"{actions}/{copy}", headers=cluster.auth_header) as resp:
            copied_doc = await resp.json()
        assert copied_doc["limits"]["memory"] == 128
        assert {"key": "note", "value": "copied"} in copied_doc["annotations"]
        for name in (source, copy, web):
            async with http.delete(f"{actions}/{name}", headers=cluster.auth_header) as resp:
                assert resp.status == 200
