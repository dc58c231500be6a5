"""apache/openwhisk-client-js (the ``openwhisk`` npm package, 3.21.9) against the real cluster:
``client_suite.mjs`` does what the client's own integration tests do, through the official
client, with Node's built-in test runner.

The client is installed from the npm registry into ``tests/compat/node_modules`` (git-ignored)
on first use; without ``node``/``npm`` on the machine the test is skipped, not passed."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cluster_fixtures import Cluster

HERE = Path(__file__).parent
CLIENT_VERSION = "3.21.9"
SUITE = HERE / "client_suite.mjs"


def _installed_version() -> str | None:
    manifest = HERE / "node_modules" / "openwhisk" / "package.json"
    if not manifest.exists():
        return None
    import json

    return str(json.loads(manifest.read_text()).get("version"))


def _ensure_client() -> None:
    if _installed_version() == CLIENT_VERSION:
        return
    done = subprocess.run(
        ["npm", "install", "--no-save", "--no-package-lock", "--no-audit", "--no-fund",
         f"openwhisk@{CLIENT_VERSION}"],
        cwd=HERE, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, f"npm install failed:\n{done.stdout}\n{done.stderr}"


async def test_openwhisk_npm_client_suite(cluster: Cluster) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for the npm client suite")
    await asyncio.to_thread(_ensure_client)
    env = {
        **os.environ,
        "__OW_API_KEY": cluster.auth,
        "__OW_API_HOST": cluster.api_host,
        "__OW_NAMESPACE": "guest",
        # The npm client sends it with route calls (OpenWhisk's API gateway wants one).
        "__OW_APIGW_TOKEN": "funtainer-test-token",
    }
    done = await asyncio.to_thread(
        subprocess.run, ["node", "--test", "--test-reporter=spec", str(SUITE)],
        cwd=HERE, env=env, capture_output=True, text=True, timeout=600,
    )
    print(done.stdout)
    print(done.stderr)
    assert done.returncode == 0, f"npm client suite failed:\n{done.stdout}\n{done.stderr}"
