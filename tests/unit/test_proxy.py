"""The Python action proxy, run on the host as a real process (no Docker), spoken to over its
Unix socket with a raw HTTP/1.1 client."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

PROXY = Path(__file__).resolve().parents[2] / "runtimes" / "python" / "proxy.py"
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z) (stdout|stderr): (.*)$")


class ProxyConnection:
    """One keep-alive HTTP/1.1 connection to a proxy socket."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def request(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: action\r\nContent-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(head.encode() + body)
        status_line = self.file.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        headers: dict[str, str] = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"])  # the proxy always sends one
        return int(status_line.split()[1]), headers, self.file.read(length)

    def post(self, path: str, message: Any) -> tuple[int, Any]:
        status, _, body = self.request("POST", path, json.dumps(message).encode())
        return status, json.loads(body)

    def init(self, code: str, activation_id: str = "init-0", **value: Any) -> tuple[int, Any]:
        env = {"__OW_ACTIVATION_ID": activation_id, **value.pop("env", {})}
        return self.post("/init", {"value": {"name": "t", "code": code, "env": env, **value}})

    def run(self, value: Any, activation_id: str = "run-0", **extra: Any) -> tuple[int, Any]:
        return self.post("/run", {"value": value, "activation_id": activation_id, **extra})

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def wait_for_socket(path: Path, timeout: float) -> float:
    """Seconds until a connection to ``path`` succeeds."""
    start = time.monotonic()
    while True:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.connect(str(path))
            return time.monotonic() - start
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() - start > timeout:
                raise
            time.sleep(0.002)


def read_log(proxy_dir: Path, activation_id: str) -> list[tuple[str, str]]:
    """(stream, text) of each line of an activation's log file, checking the line format."""
    lines = []
    for line in (proxy_dir / "logs" / f"{activation_id}.log").read_text().splitlines():
        match = LOG_LINE.match(line)
        assert match, f"badly formatted log line {line!r}"
        assert line[30] == " " and len(match.group(1)) == 30
        stamp = datetime.strptime(match.group(1)[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
        assert abs(stamp.timestamp() - time.time()) < 60
        assert "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX" not in line
        lines.append((match.group(2), match.group(3)))
    return lines


@dataclass
class ProxyProcess:
    dir: Path
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.dir / "proxy.sock"

    def connect(self) -> ProxyConnection:
        return ProxyConnection(self.socket)


@pytest.fixture
def proxy() -> Iterator[ProxyProcess]:
    yield from _proxy_process({})


def _proxy_process(env: dict[str, str]) -> Iterator[ProxyProcess]:
    # Not tmp_path: a Unix socket path must stay under 108 bytes.
    proxy_dir = Path(tempfile.mkdtemp(prefix="ftp-"))
    (proxy_dir / "proxy.sock").write_text("stale")  # a leftover must not stop the proxy
    with open(proxy_dir / "diag.txt", "wb") as diag:
        process = subprocess.Popen(
            [sys.executable, "-s", "-P", str(PROXY)],
            env={**os.environ, "FT_PROXY_DIR": str(proxy_dir), **env},
            stdout=diag,
            stderr=diag,
        )
    try:
        wait_for_socket(proxy_dir / "proxy.sock", timeout=10)
        yield ProxyProcess(proxy_dir, process)
    finally:
        # The proxy exits at once on SIGTERM. A blocking wait, because Popen.wait(timeout)
        # occasionally trips an internal pid assertion here.
        process.terminate()
        process.wait()
        shutil.rmtree(proxy_dir, ignore_errors=True)


@pytest.fixture
def conn(proxy: ProxyProcess) -> Iterator[ProxyConnection]:
    connection = proxy.connect()
    yield connection
    connection.close()


HELLO = "def main(args):\n    return {'greeting': 'Hello ' + args.get('name', 'stranger')}\n"


def test_init_then_run(conn: ProxyConnection) -> None:
    assert conn.init(HELLO) == (200, {"ok": True})
    assert conn.run({"name": "World"}) == (200, {"greeting": "Hello World"})


def test_ow_environment_visible_to_main(conn: ProxyConnection) -> None:
    code = textwrap.dedent(
        """
        import os
        def main(a):
            return {k: v for k, v in os.environ.items() if k.startswith(("__OW_", "DB_"))}
        """
    )
    assert conn.init(code, env={"DB_URL": "redis://x", "__OW_API_HOST": "http://h"})[0] == 200
    status, env = conn.run(
        {},
        "c7bb1339cb4f40e3a6ccead6c99f804e",
        namespace="guest",
        action_name="/guest/t",
        action_version="0.0.1",
        transaction_id="tid",
        deadline="1718000060000",
        api_key="k:s",
    )
    assert status == 200
    assert env["__OW_ACTIVATION_ID"] == "c7bb1339cb4f40e3a6ccead6c99f804e"
    assert env["__OW_NAMESPACE"] == "guest"
    assert env["__OW_ACTION_NAME"] == "/guest/t"
    assert env["__OW_DEADLINE"] == "1718000060000"
    assert env["__OW_API_KEY"] == "k:s"
    assert env["DB_URL"] == "redis://x"


def test_keep_alive_serves_many_runs_on_one_connection(conn: ProxyConnection) -> None:
    conn.init("n = 0\ndef main(a):\n    global n\n    n += 1\n    return {'n': n}\n")
    for i in range(1, 21):
        status, headers, body = conn.request("POST", "/run", b'{"value":{}}')
        assert (status, json.loads(body)) == (200, {"n": i})
        assert headers.get("connection", "").lower() != "close"


def test_idle_connection_does_not_block_another(proxy: ProxyProcess) -> None:
    first = proxy.connect()
    second = proxy.connect()
    try:
        assert first.init(HELLO)[0] == 200
        assert second.run({"name": "B"}) == (200, {"greeting": "Hello B"})
        assert first.run({"name": "A"}) == (200, {"greeting": "Hello A"})
    finally:
        first.close()
        second.close()


def test_init_only_once_and_run_needs_init(conn: ProxyConnection) -> None:
    assert conn.run({})[0] == 403
    assert conn.init(HELLO)[0] == 200
    assert conn.init(HELLO) == (403, {"error": "Cannot initialize the action more than once."})


def test_syntax_error_at_init(proxy: ProxyProcess, conn: ProxyConnection) -> None:
    status, body = conn.init("def main(a)\n    return a\n", activation_id="syntax-1")
    assert status == 502
    assert "syntax" in body["error"].lower()
    logged = "\n".join(
        text for stream, text in read_log(proxy.dir, "syntax-1") if stream == "stderr"
    )
    assert "SyntaxError" in logged and "def main(a)" in logged


def test_action_baked_into_the_image_runs_without_code(tmp_path: Path) -> None:
    """A blackbox image built on the Python runtime may carry its action in /action."""
    baked = tmp_path / "action"
    (baked / "helpers").mkdir(parents=True)
    (baked / "helpers" / "__init__.py").write_text("PREFIX = 'baked '\n")
    (baked / "__main__.py").write_text(
        "from helpers import PREFIX\n"
        "def main(args):\n    return {'said': PREFIX + args['word']}\n")
    processes = _proxy_process({"FT_ACTION_DIR": str(baked)})
    proxy = next(processes)
    conn = proxy.connect()
    try:
        assert conn.post("/init", {"value": {"name": "t", "env": {}}}) == (200, {"ok": True})
        assert conn.run({"word": "hi"}) == (200, {"said": "baked hi"})
    finally:
        conn.close()
        processes.close()


def test_init_failures(conn: ProxyConnection) -> None:
    assert conn.init("   ") == (502, {"error": "Missing main/no code to execute."})
    assert conn.init("x = 1\n") == (502, {"error": "Action entrypoint 'main' is not a function."})
    status, body = conn.init("raise RuntimeError('at import')\n")
    assert status == 502 and "at import" in body["error"]
    # After failed inits the action is still uninitialized; a custom entry point works.
    assert conn.init("def handler(a):\n    return {'h': 1}\n", main="handler")[0] == 200
    assert conn.run({}) == (200, {"h": 1})


def test_exception_in_main_is_an_application_error(
    proxy: ProxyProcess, conn: ProxyConnection
) -> None:
    conn.init("def main(a):\n    raise ValueError('boom ' + a['x'])\n")
    assert conn.run({"x": "1"}, "exc-1") == (200, {"error": "boom 1"})
    stderr = [text for stream, text in read_log(proxy.dir, "exc-1") if stream == "stderr"]
    assert stderr[0] == "Traceback (most recent call last):"
    assert stderr[-1] == "ValueError: boom 1"
    # The action's own frame, with its source line, and none of the proxy's.
    assert "raise ValueError('boom ' + a['x'])" in "\n".join(stderr)
    assert "proxy.py" not in "\n".join(stderr)
    # The container stays usable.
    assert conn.run({"x": "2"}) == (200, {"error": "boom 2"})


@pytest.mark.parametrize(
    ("result", "error"),
    [
        ("42", "The action did not return a dictionary or array."),
        ("None", "The action did not return a dictionary or array."),
        ("{'x': object()}", "not JSON serializable"),
        ("{'x': float('nan')}", "not JSON serializable"),
    ],
)
def test_invalid_results(conn: ProxyConnection, result: str, error: str) -> None:
    conn.init(f"def main(a):\n    return {result}\n")
    status, body = conn.run({})
    assert status == 502
    assert error in body["error"]


def test_array_payload_and_result(conn: ProxyConnection) -> None:
    conn.init("def main(a):\n    return list(reversed(a))\n")
    assert conn.run([1, "two", {"three": 3}]) == (200, [{"three": 3}, "two", 1])


def test_logs_of_prints_and_subprocesses(proxy: ProxyProcess, conn: ProxyConnection) -> None:
    code = textwrap.dedent(
        """
        import subprocess, sys
        print("init line")
        def main(a):
            print("hello", a["n"])
            print("to stderr", file=sys.stderr)
            subprocess.run(["echo", "child says hi"], check=True)
            subprocess.run(["sh", "-c", "echo child error >&2"], check=True)
            sys.stdout.write("no newline at the end")
            return {"n": a["n"]}
        """
    )
    conn.init(code)
    assert conn.run({"n": 1}, "logs-1") == (200, {"n": 1})
    assert conn.run({"n": 2}, "logs-2") == (200, {"n": 2})
    first = read_log(proxy.dir, "logs-1")
    stdout = [text for stream, text in first if stream == "stdout"]
    stderr = [text for stream, text in first if stream == "stderr"]
    # Lines logged during /init belong to the first activation.
    assert stdout == ["init line", "hello 1", "child says hi", "no newline at the end"]
    assert stderr == ["to stderr", "child error"]
    second = read_log(proxy.dir, "logs-2")
    assert ("stdout", "hello 2") in second and ("stdout", "init line") not in second
    assert ("stdout", "hello 1") not in second


def test_late_output_goes_to_the_next_activation(
    proxy: ProxyProcess, conn: ProxyConnection
) -> None:
    code = textwrap.dedent(
        """
        import subprocess
        def main(a):
            if a.get("spawn"):
                subprocess.Popen(["sh", "-c", "sleep 0.1; echo late"])
            return {}
        """
    )
    conn.init(code)
    assert conn.run({"spawn": True}, "late-1") == (200, {})
    time.sleep(0.5)
    assert conn.run({}, "late-2") == (200, {})
    assert read_log(proxy.dir, "late-2") == [("stdout", "late")]
    # An activation that logged nothing leaves no file behind.
    assert conn.run({}, "late-3") == (200, {})
    assert not (proxy.dir / "logs" / "late-3.log").exists()


def test_output_is_captured_even_after_the_action_closes_stdout(
    proxy: ProxyProcess, conn: ProxyConnection
) -> None:
    conn.init(
        "import os\ndef main(a):\n    print('before', flush=True)\n    os.close(1)\n    return {}\n"
    )
    assert conn.run({}, "closed-1") == (200, {})
    assert ("stdout", "before") in read_log(proxy.dir, "closed-1")
    start = time.monotonic()
    assert conn.run({}, "closed-2") == (200, {})
    assert time.monotonic() - start < 1.5  # fd 1 was restored: no wait for a lost sentinel
    assert ("stdout", "before") in read_log(proxy.dir, "closed-2")


def test_log_limit(proxy: ProxyProcess, conn: ProxyConnection) -> None:
    conn.init(
        "def main(a):\n    for i in range(11 * 1024):\n        print('x' * 1023)\n    return {}\n"
    )
    assert conn.run({}, "big-1") == (200, {})
    lines = read_log(proxy.dir, "big-1")
    assert 10 * 1024 - 10 < len(lines) < 10 * 1024 + 2
    assert lines[-1] == (
        "stderr",
        "Logs were truncated because the total bytes size exceeds the limit of 10485760 bytes.",
    )


def _zip(files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return base64.b64encode(buffer.getvalue()).decode()


def test_zip_action(conn: ProxyConnection) -> None:
    code = _zip(
        {
            "__main__.py": "import helper, vendored\n"
            "def main(a):\n"
            "    data = open('data.txt').read()  # relative to the action's own directory\n"
            "    return {'r': helper.double(a['n']), 'v': vendored.NAME, 'd': data}\n",
            "helper.py": "def double(n):\n    return 2 * n\n",
            "data.txt": "from the zip",
            "virtualenv/lib/python3.11/site-packages/vendored/__init__.py": "NAME = 'venv'\n",
        }
    )
    assert conn.init(code, binary=True) == (200, {"ok": True})
    assert conn.run({"n": 21}) == (200, {"r": 42, "v": "venv", "d": "from the zip"})


def test_bad_zips(conn: ProxyConnection) -> None:
    status, body = conn.init(_zip({"main.py": "def main(a):\n    return a\n"}), binary=True)
    assert status == 502 and "__main__.py" in body["error"]
    status, body = conn.init(base64.b64encode(b"not a zip").decode(), binary=True)
    assert status == 502 and "zip" in body["error"]


def test_protocol_errors(conn: ProxyConnection) -> None:
    status, _, body = conn.request("POST", "/run", b"{not json")
    assert status == 400 and "error" in json.loads(body)
    assert conn.request("POST", "/nowhere", b"{}")[0] == 404
    assert conn.request("GET", "/run", b"")[0] == 405
    # The connection is still in sync after the errors.
    assert conn.init(HELLO)[0] == 200


def _raw_exchange(proxy: ProxyProcess, request: bytes) -> tuple[bytes, bool]:
    """Send raw bytes on a fresh connection: the whole answer's head and body, and whether
    the proxy closed the connection after it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(proxy.socket))
        sock.sendall(request)
        file = sock.makefile("rb")
        head = b""
        while (line := file.readline()) not in (b"\r\n", b""):
            head += line
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
        body = file.read(length)
        sock.settimeout(1)
        try:
            closed = file.read(1) == b""
        except TimeoutError:
            closed = False
        return head + b"\r\n" + body, closed


def test_request_framing(proxy: ProxyProcess) -> None:
    init = json.dumps({"value": {"code": HELLO, "env": {}}}).encode()
    # A chunked body is read whole; the connection stays open.
    chunked = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (10, init[:10], len(init) - 10, init[10:])
    answer, closed = _raw_exchange(
        proxy, b"POST /init HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'{"ok":true}' in answer and not closed
    run = json.dumps({"value": {"name": "x"}, "activation_id": "a1"}).encode()
    # HTTP/1.0 and "Connection: close" end the connection after the answer.
    for version, extra in ((b"HTTP/1.0", b""), (b"HTTP/1.1", b"Connection: close\r\n")):
        answer, closed = _raw_exchange(proxy, b"POST /run %s\r\n%sContent-Length: %d\r\n\r\n%s"
                                       % (version, extra, len(run), run))
        assert b"Hello x" in answer and b"Connection: close" in answer and closed
    # What cannot be framed is answered 400 and the connection closed.
    for bad in (b"POST /run\r\n\r\n", b"POST /run HTTP/1.1\r\nContent-Length: -3\r\n\r\n",
                b"POST /run HTTP/1.1\r\nno colon here\r\n\r\n",
                b"POST /run HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        answer, closed = _raw_exchange(proxy, bad)
        assert answer.startswith(b"HTTP/1.1 400 ") and b'"error"' in answer and closed, bad
    # Too many headers, too.
    flood = b"".join(b"X-%d: y\r\n" % i for i in range(200))
    answer, closed = _raw_exchange(proxy, b"POST /run HTTP/1.1\r\n" + flood + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ") and closed
