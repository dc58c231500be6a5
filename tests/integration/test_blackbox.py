"""Blackbox actions (``--docker IMAGE``) on the real cluster: an image built on the Python
runtime that carries its action, the runtime image given code at create, an image the engine
does not have (OpenWhisk's developer error; nothing is ever pulled), and bad image names."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.test_cli import Ft, ft  # noqa: F401  (the fixture, shared)

ACTIONS = "/api/v1/namespaces/_/actions"
BAKED_ACTION = "def main(args):\n    return {'from': 'the image', 'got': args.get('x')}\n"


def _context(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def baked_image() -> Iterator[str]:
    """An image FROM the Python runtime with its action in /action (built offline: the base
    image is local)."""
    tag = f"ft-test/blackbox:{uuid.uuid4().hex[:8]}"
    context = _context({
        "Dockerfile": "FROM funtainer/python:3.11\nCOPY __main__.py /action/__main__.py\n",
        "__main__.py": BAKED_ACTION,
    })
    built = subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=context,
                           capture_output=True, timeout=120)
    assert built.returncode == 0, built.stderr.decode()
    yield tag
    subprocess.run(["docker", "rmi", "-f", tag], capture_output=True, timeout=60)


async def _invoke(http: aiohttp.ClientSession, name: str, args: dict) -> dict:
    async with http.post(f"{ACTIONS}/{name}", params={"blocking": "true"}, json=args) as resp:
        return await resp.json()


async def test_blackbox_image_carrying_its_action(
    ft: Ft, http: aiohttp.ClientSession, baked_image: str  # noqa: F811
) -> None:
    name = f"bb-{uuid.uuid4().hex[:6]}"
    done = await ft("action", "create", name, "--docker", baked_image)
    assert done.returncode == 0, done.stderr
    got = await ft("action", "get", name)
    doc = json.loads(got.stdout.split("\n", 1)[1])
    assert doc["exec"] == {"kind": "blackbox", "image": baked_image, "binary": False}
    assert {"key": "exec", "value": "blackbox"} in doc["annotations"]

    record = await _invoke(http, name, {"x": 7})
    assert record["response"]["result"] == {"from": "the image", "got": 7}, record
    # Warm reuse of the same container works like any action's.
    again = await _invoke(http, name, {"x": 8})
    assert again["response"]["result"] == {"from": "the image", "got": 8}


async def test_blackbox_with_code_given_at_create(
    ft: Ft, http: aiohttp.ClientSession, tmp_path: Path  # noqa: F811
) -> None:
    name = f"bb-{uuid.uuid4().hex[:6]}"
    code = tmp_path / "hello.py"
    code.write_text("def greet(args):\n    return {'hello': args['who']}\n")
    done = await ft("action", "create", name, str(code), "--docker", "funtainer/python:3.11",
                    "--main", "greet")
    assert done.returncode == 0, done.stderr
    record = await _invoke(http, name, {"who": "box"})
    assert record["response"]["result"] == {"hello": "box"}, record
    refused = await ft("action", "create", f"{name}-y", str(code), "--docker", "img",
                       "--kind", "python:3")
    assert refused.returncode != 0
    assert "Cannot specify both --kind and --docker at the same time." in refused.stderr


async def test_missing_image_is_a_developer_error(http: aiohttp.ClientSession) -> None:
    name = f"bb-{uuid.uuid4().hex[:6]}"
    image = f"ft-test/never-built:{uuid.uuid4().hex[:6]}"
    async with http.put(f"{ACTIONS}/{name}",
                        json={"exec": {"kind": "blackbox", "image": image}}) as resp:
        assert resp.status == 200, await resp.text()
    record = await _invoke(http, name, {})
    assert record["response"]["status"] == "action developer error"
    assert record["response"]["result"] == {
        "error": f"Failed to pull container image '{image}'."}
    # Nothing was left behind: a second invoke meets the same answer, not a stuck container.
    again = await _invoke(http, name, {})
    assert again["response"]["result"] == record["response"]["result"]


@pytest.mark.parametrize("exec_", [
    {"kind": "blackbox"},
    {"kind": "blackbox", "image": ""},
    {"kind": "blackbox", "image": "Upper/Case"},
    {"kind": "blackbox", "image": "a b"},
    {"kind": "blackbox", "image": 42},
    {"kind": "blackbox", "image": "ok/img", "code": 5},
])
async def test_bad_blackbox_exec_is_refused(http: aiohttp.ClientSession, exec_: dict) -> None:
    async with http.put(f"{ACTIONS}/bb-bad", json={"exec": exec_}) as resp:
        assert resp.status == 400, await resp.text()
        body = await resp.json()
    assert body["error"].startswith("The request content was malformed:"), body
