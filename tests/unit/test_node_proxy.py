"""The Node.js action proxy, run on the host with the machine's `node` as real processes (no
Docker), spoken to over its Unix socket with the same raw HTTP/1.1 client as the Python
proxy's tests: both proxies honour one contract."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_proxy import ProxyConnection, ProxyProcess, read_log, wait_for_socket

PROXY = Path(__file__).resolve().parents[2] / "runtimes" / "nodejs" / "proxy.js"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(NODE is None, reason="`node` is not installed on this machine")

NOT_A_RESULT = "The action did not return a dictionary or array."


@pytest.fixture
def proxy() -> Iterator[ProxyProcess]:
    # Not tmp_path: a Unix socket path must stay under 108 bytes.
    proxy_dir = Path(tempfile.mkdtemp(prefix="ftn-"))
    (proxy_dir / "proxy.sock").write_text("stale")  # a leftover must not stop the proxy
    assert NODE is not None
    with open(proxy_dir / "diag.txt", "wb") as diag:
        process = subprocess.Popen(
            [NODE, str(PROXY)],
            # TMPDIR: zip actions and the log pipes go where the fixture cleans up.
            env={**os.environ, "FT_PROXY_DIR": str(proxy_dir), "TMPDIR": str(proxy_dir)},
            stdout=diag,
            stderr=diag,
        )
    try:
        wait_for_socket(proxy_dir / "proxy.sock", timeout=10)
        yield ProxyProcess(proxy_dir, process)
    finally:
        # The supervisor kills its worker and exits at once on SIGTERM.
        process.terminate()
        process.wait()
        shutil.rmtree(proxy_dir, ignore_errors=True)


@pytest.fixture
def conn(proxy: ProxyProcess) -> Iterator[ProxyConnection]:
    connection = proxy.connect()
    yield connection
    connection.close()


def streams(proxy: ProxyProcess, activation_id: str, stream: str) -> list[str]:
    return [text for name, text in read_log(proxy.dir, activation_id) if name == stream]


def _zip(files: dict[str, str | bytes], modes: dict[str, int] | None = None) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix: external_attr carries the mode
            info.external_attr = ((modes or {}).get(name, 0o100644)) << 16
            archive.writestr(info, content)
    return base64.b64encode(buffer.getvalue()).decode()


HELLO = "function main(args) {\n  return { greeting: 'Hello ' + (args.name || 'stranger') };\n}\n"


def test_init_then_run(conn: ProxyConnection) -> None:
    assert conn.init(HELLO) == (200, {"ok": True})
    assert conn.run({"name": "World"}) == (200, {"greeting": "Hello World"})


def test_ow_environment_visible_to_main(conn: ProxyConnection) -> None:
    code = textwrap.dedent(
        """
        function main(a) {
          return Object.fromEntries(Object.entries(process.env)
            .filter(([k]) => k.startsWith('__OW_') || k.startsWith('DB_')));
        }
        """
    )
    env = {"DB_URL": "redis://x", "DB_PORT": 6379, "DB_OPTS": {"a": [1]}, "DB_NONE": None}
    assert conn.init(code, env=env)[0] == 200
    status, result = conn.run(
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
    assert result["__OW_ACTIVATION_ID"] == "c7bb1339cb4f40e3a6ccead6c99f804e"
    assert result["__OW_NAMESPACE"] == "guest"
    assert result["__OW_ACTION_NAME"] == "/guest/t"
    assert result["__OW_ACTION_VERSION"] == "0.0.1"
    assert result["__OW_TRANSACTION_ID"] == "tid"
    assert result["__OW_DEADLINE"] == "1718000060000"
    assert result["__OW_API_KEY"] == "k:s"
    # Init env values are strings: numbers and objects as compact JSON, null as "".
    assert (result["DB_URL"], result["DB_PORT"], result["DB_OPTS"], result["DB_NONE"]) == (
        "redis://x",
        "6379",
        '{"a":[1]}',
        "",
    )


def test_keep_alive_serves_many_runs_on_one_connection(conn: ProxyConnection) -> None:
    conn.init("let n = 0;\nfunction main(a) {\n  n += 1;\n  return { n };\n}\n")
    for i in range(1, 21):
        status, headers, body = conn.request("POST", "/run", b'{"value":{}}')
        assert (status, json.loads(body)) == (200, {"n": i})
        assert headers.get("connection", "").lower() != "close"
        assert int(headers["content-length"]) == len(body)


def test_idle_connection_stays_open(conn: ProxyConnection) -> None:
    """The invoker keeps one connection per container for its whole life; Node's HTTP server
    would close an idle one after 5 s."""
    assert conn.init(HELLO)[0] == 200
    time.sleep(5.5)
    assert conn.run({"name": "later"}) == (200, {"greeting": "Hello later"})


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
    assert conn.run({}) == (403, {"error": "Cannot run an uninitialized action."})
    assert conn.init(HELLO)[0] == 200
    assert conn.init(HELLO) == (403, {"error": "Cannot initialize the action more than once."})


def test_syntax_error_at_init(proxy: ProxyProcess, conn: ProxyConnection) -> None:
    status, body = conn.init("function main(a)\n  return a;\n}\n", activation_id="syntax-1")
    assert status == 502
    assert body["error"].startswith("The action's code has a syntax error: ")
    assert "line 2" in body["error"]
    stderr = "\n".join(streams(proxy, "syntax-1", "stderr"))
    # Node's report: the offending source line, the error, none of the proxy's own frames.
    assert "SyntaxError" in stderr and "  return a;" in stderr
    assert "_ft_worker.js" not in stderr and "node:internal" not in stderr
    # A failed init leaves the action uninitialized; a good one still works.
    assert conn.init(HELLO)[0] == 200


def test_init_failures(proxy: ProxyProcess, conn: ProxyConnection) -> None:
    assert conn.init("   ") == (502, {"error": "Missing main/no code to execute."})
    assert conn.init("const x = 1;\n") == (
        502,
        {"error": "Action entrypoint 'main' is not a function."},
    )
    status, body = conn.init("throw new Error('at import');\n", activation_id="import-1")
    assert status == 502
    assert body["error"] == "The action failed during initialization: Error: at import"
    assert "Error: at import" in streams(proxy, "import-1", "stderr")
    # A SyntaxError thrown by running code is not a syntax error of the action's code.
    status, body = conn.init("JSON.parse('{');\n")
    assert status == 502 and body["error"].startswith("The action failed during initialization")
    # After failed inits the action is still uninitialized; a custom entry point works.
    assert conn.init("function handler(a) {\n  return { h: 1 };\n}\n", main="handler")[0] == 200
    assert conn.run({}) == (200, {"h": 1})


@pytest.mark.parametrize(
    ("code", "main"),
    [
        ("function main(a) { return { got: a.x }; }", None),
        ("async function main(a) { await null; return { got: a.x }; }", None),
        ("function main(a) { return new Promise((r) => setTimeout(r, 5, { got: a.x })); }", None),
        ("const main = (a) => ({ got: a.x });", None),
        ("exports.main = (a) => ({ got: a.x });", None),
        ("module.exports.main = (a) => ({ got: a.x });", None),
        ("module.exports = { main: async (a) => ({ got: a.x }) };", None),
        ("function other(a) { return { got: a.x }; }\nfunction main() { return {}; }", "other"),
        ("exports.handler = (a) => ({ got: a.x });", "handler"),
    ],
    ids=[
        "sync",
        "async",
        "promise",
        "arrow",
        "exports",
        "module.exports.main",
        "module.exports",
        "value.main",
        "exported-main",
    ],
)
def test_entry_point_forms(conn: ProxyConnection, code: str, main: str | None) -> None:
    extra = {"main": main} if main else {}
    assert conn.init(code, **extra) == (200, {"ok": True})
    assert conn.run({"x": 7}) == (200, {"got": 7})


def test_source_action_can_require_builtins_and_import(conn: ProxyConnection) -> None:
    code = textwrap.dedent(
        """
        const os = require('os');
        async function main() {
          const { createHash } = await import('node:crypto');
          return { platform: os.platform(), sha: createHash('sha1').update('x').digest('hex') };
        }
        """
    )
    assert conn.init(code)[0] == 200
    status, result = conn.run({})
    assert status == 200
    assert result == {"platform": "linux", "sha": "11f6ad8ec52a2984abaafd7c3b516503785c2072"}


def test_thrown_error_is_an_application_error(proxy: ProxyProcess, conn: ProxyConnection) -> None:
    conn.init("function main(a) {\n  throw new Error('boom ' + a.x);\n}\n")
    assert conn.run({"x": "1"}, "exc-1") == (200, {"error": "boom 1"})
    stderr = streams(proxy, "exc-1", "stderr")
    assert stderr[0] == "Error: boom 1"
    # The action's own frame, and none of the proxy's.
    assert "action.js:2" in stderr[1]
    assert "_ft_worker.js" not in "\n".join(stderr)
    # The container stays usable.
    assert conn.run({"x": "2"}) == (200, {"error": "boom 2"})


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("return Promise.reject(new Error('nope'));", "nope"),
        ("await Promise.resolve(); throw new TypeError('late');", "late"),
        ("return Promise.reject('plain string');", "plain string"),
        ("return Promise.reject({ code: 42 });", {"code": 42}),
        ("return Promise.reject();", "The action failed without giving a reason."),
    ],
    ids=["error", "async-throw", "string", "object", "nothing"],
)
def test_rejected_promise_is_an_application_error(
    conn: ProxyConnection, body: str, error: object
) -> None:
    conn.init(f"async function main(a) {{ {body} }}")
    assert conn.run({}) == (200, {"error": error})


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ("42", (502, {"error": NOT_A_RESULT})),
        ("'text'", (502, {"error": NOT_A_RESULT})),
        ("null", (502, {"error": NOT_A_RESULT})),
        ("Promise.resolve(true)", (502, {"error": NOT_A_RESULT})),
        ("new Date(0)", (502, {"error": NOT_A_RESULT})),
        # OpenWhisk's Node.js runtime: nothing returned is an empty result.
        ("undefined", (200, {})),
        ("Promise.resolve()", (200, {})),
    ],
)
def test_non_object_results(conn: ProxyConnection, result: str, expected: object) -> None:
    conn.init(f"function main(a) {{ return {result}; }}")
    assert conn.run({}) == expected


@pytest.mark.parametrize(
    "code",
    ["const o = {}; o.self = o; return o;", "return { n: 10n };"],
    ids=["circular", "bigint"],
)
def test_unserializable_result(proxy: ProxyProcess, conn: ProxyConnection, code: str) -> None:
    conn.init(f"function main(a) {{ {code} }}")
    status, body = conn.run({}, "unser-1")
    assert status == 502 and "not JSON serializable" in body["error"]
    assert "\n" not in body["error"]
    assert streams(proxy, "unser-1", "stderr")[0] == body["error"]


def test_array_payload_and_result(conn: ProxyConnection) -> None:
    conn.init("function main(a) { return a.slice().reverse(); }")
    assert conn.run([1, "two", {"three": 3}]) == (200, [{"three": 3}, "two", 1])


def test_logs_of_console_and_child_processes(proxy: ProxyProcess, conn: ProxyConnection) -> None:
    code = textwrap.dedent(
        """
        const { execSync, spawnSync } = require('child_process');
        console.log('init line');
        function main(a) {
          console.log('hello', a.n);
          console.error('to stderr');
          execSync('echo child says hi', { stdio: 'inherit' });
          execSync('echo child error >&2', { stdio: 'inherit' });
          // Real pipes, as under OpenWhisk: /dev/stderr can be opened (not with socketpairs).
          execSync('echo via dev stderr > /dev/stderr', { stdio: 'inherit' });
          spawnSync('sh', ['-c', 'printf "%s\\\\n" "from spawnSync"'], { stdio: 'inherit' });
          process.stdout.write('no newline at the end');
          return { n: a.n };
        }
        """
    )
    assert conn.init(code) == (200, {"ok": True})
    assert conn.run({"n": 1}, "logs-1") == (200, {"n": 1})
    assert conn.run({"n": 2}, "logs-2") == (200, {"n": 2})
    # Lines logged during /init belong to the first activation.
    assert streams(proxy, "logs-1", "stdout") == [
        "init line",
        "hello 1",
        "child says hi",
        "from spawnSync",
        "no newline at the end",
    ]
    assert streams(proxy, "logs-1", "stderr") == ["to stderr", "child error", "via dev stderr"]
    second = read_log(proxy.dir, "logs-2")
    assert ("stdout", "hello 2") in second and ("stdout", "init line") not in second
    assert ("stdout", "hello 1") not in second
    assert (proxy.dir / "logs" / "logs-1.log").stat().st_mode & 0o777 == 0o644
    assert not list((proxy.dir / "logs").glob(".*"))  # no temp files left behind


def test_late_output_goes_to_the_next_activation(
    proxy: ProxyProcess, conn: ProxyConnection
) -> None:
    code = textwrap.dedent(
        """
        const { spawn } = require('child_process');
        function main(a) {
          if (a.spawn) spawn('sh', ['-c', 'sleep 0.1; echo late'], { stdio: 'inherit' });
          return {};
        }
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


def test_log_limit(proxy: ProxyProcess, conn: ProxyConnection) -> None:
    conn.init(
        "function main(a) {\n"
        "  const line = 'x'.repeat(1023);\n"
        "  for (let i = 0; i < 11 * 1024; i++) console.log(line);\n"
        "  return {};\n"
        "}\n"
    )
    assert conn.run({}, "big-1") == (200, {})
    lines = read_log(proxy.dir, "big-1")
    assert 10 * 1024 - 10 < len(lines) < 10 * 1024 + 2
    assert lines[-1] == (
        "stderr",
        "Logs were truncated because the total bytes size exceeds the limit of 10485760 bytes.",
    )
    # The limit is per activation.
    assert conn.run({}, "big-2") == (200, {})
    assert len(read_log(proxy.dir, "big-2")) == len(lines)


def test_many_short_lines_are_cut_at_twice_the_limit_in_the_file(
    proxy: ProxyProcess, conn: ProxyConnection
) -> None:
    """6 MB of one-character lines is within the 10 MiB limit, but with ~40 bytes of stamp
    and stream name per line the file would be 130 MB: it is cut at twice the limit."""
    conn.init(
        "function main(a) {\n"
        "  for (let i = 0; i < 3; i++) process.stdout.write('x\\n'.repeat(1 << 20));\n"
        "  return {};\n"
        "}\n"
    )
    assert conn.run({}, "short-1") == (200, {})
    path = proxy.dir / "logs" / "short-1.log"
    assert 2 * 10 * 1024 * 1024 - 200 < path.stat().st_size <= 2 * 10 * 1024 * 1024
    lines = read_log(proxy.dir, "short-1")
    assert set(lines[:-1]) == {("stdout", "x")}
    assert lines[-1] == (
        "stderr",
        "Logs were truncated because the total bytes size exceeds the limit of 10485760 bytes.",
    )


def test_output_after_the_action_ends_stdout(proxy: ProxyProcess, conn: ProxyConnection) -> None:
    conn.init(
        "function main(a) {\n"
        "  console.log('before');\n"
        "  if (!a.again) process.stdout.end();\n"
        "  console.error('on stderr');\n"
        "  return {};\n"
        "}\n"
    )
    assert conn.run({}, "ended-1") == (200, {})
    assert ("stdout", "before") in read_log(proxy.dir, "ended-1")
    start = time.monotonic()
    assert conn.run({"again": True}, "ended-2") == (200, {})
    assert time.monotonic() - start < 1.5  # no wait for a sentinel that cannot come
    assert ("stderr", "on stderr") in read_log(proxy.dir, "ended-2")


def test_error_after_the_action_ends_stderr(proxy: ProxyProcess, conn: ProxyConnection) -> None:
    conn.init("function main(a) {\n  process.stderr.end();\n  throw new Error('after end');\n}\n")
    assert conn.run({}, "errend-1") == (200, {"error": "after end"})
    assert conn.run({}, "errend-2") == (200, {"error": "after end"})  # the worker lives on
    assert ("stderr", "Error: after end") in read_log(proxy.dir, "errend-2")


# -- zip actions ---------------------------------------------------------------------------


def test_zip_action_from_the_npm_client_tests(conn: ProxyConnection) -> None:
    """openwhisk-client-js's actions test: package.json + index.js exporting main."""
    code = _zip(
        {
            "package.json": json.dumps({"name": "zip-action", "main": "index.js"}),
            "index.js": (
                "function main() {\n  return { hello: 'world' };\n}\nexports.main = main;\n"
            ),
        }
    )
    assert conn.init(code, binary=True) == (200, {"ok": True})
    assert conn.run({}) == (200, {"hello": "world"})


def test_zip_action_with_modules_files_and_executables(conn: ProxyConnection) -> None:
    code = _zip(
        {
            "package.json": json.dumps({"name": "a", "main": "lib/action.js"}),
            "lib/action.js": textwrap.dedent(
                """
                const fs = require('fs');
                const { execFileSync } = require('child_process');
                const dep = require('dep');
                exports.main = (a) => ({
                  dep: dep.twice(a.n),
                  data: fs.readFileSync('data.txt', 'utf8'),
                  tool: execFileSync('./bin/tool').toString().trim(),
                  cwd: process.cwd(),
                });
                """
            ),
            "node_modules/dep/package.json": json.dumps({"name": "dep", "main": "main.js"}),
            "node_modules/dep/main.js": "exports.twice = (n) => 2 * n;\n",
            "data.txt": "from the zip",
            "bin/tool": "#!/bin/sh\necho tool ran\n",
        },
        modes={"bin/tool": 0o100755},
    )
    assert conn.init(code, binary=True) == (200, {"ok": True})
    status, result = conn.run({"n": 21})
    assert status == 200
    assert result["dep"] == 42 and result["data"] == "from the zip"
    assert result["tool"] == "tool ran"
    assert Path(result["cwd"]).name.startswith("action-")


def test_zip_with_index_js_alone_and_a_custom_entry(conn: ProxyConnection) -> None:
    code = _zip({"index.js": "exports.handler = async (a) => ({ via: 'index', ...a });\n"})
    assert conn.init(code, binary=True, main="handler") == (200, {"ok": True})
    assert conn.run({"x": 1}) == (200, {"via": "index", "x": 1})


def test_zip_es_module(conn: ProxyConnection) -> None:
    code = _zip(
        {
            "package.json": json.dumps({"name": "esm", "type": "module", "main": "index.js"}),
            "index.js": "export async function main(a) {\n  return { esm: true, ...a };\n}\n",
        }
    )
    assert conn.init(code, binary=True) == (200, {"ok": True})
    assert conn.run({"y": 2}) == (200, {"esm": True, "y": 2})


def test_zip_syntax_error(proxy: ProxyProcess, conn: ProxyConnection) -> None:
    code = _zip({"index.js": "exports.main = function (a) {\n  return a\n\n"})
    status, body = conn.init(code, binary=True, activation_id="zipsyntax-1")
    assert status == 502 and "syntax error" in body["error"]
    assert "SyntaxError" in "\n".join(streams(proxy, "zipsyntax-1", "stderr"))


def test_bad_zips(conn: ProxyConnection) -> None:
    status, body = conn.init(_zip({"main.js": "exports.main = (a) => a;\n"}), binary=True)
    assert (status, body) == (
        502,
        {"error": "Zipped actions must contain either package.json or index.js at the root."},
    )
    status, body = conn.init(base64.b64encode(b"not a zip at all").decode(), binary=True)
    assert status == 502 and "zip" in body["error"]
    status, body = conn.init(_zip({"../escape.js": "x", "index.js": "x"}), binary=True)
    assert status == 502 and "leaves the extraction directory" in body["error"]
    # After all that, a good zip still initializes.
    good = _zip({"index.js": "exports.main = () => ({ ok: 1 });\n"})
    assert conn.init(good, binary=True) == (200, {"ok": True})


def test_protocol_errors(conn: ProxyConnection) -> None:
    status, _, body = conn.request("POST", "/run", b"{not json")
    assert status == 400 and "error" in json.loads(body)
    assert conn.request("POST", "/run", b"[1]")[0] == 400
    assert conn.request("POST", "/run", b"")[0] == 400
    assert conn.request("POST", "/nowhere", b"{}")[0] == 404
    assert conn.request("GET", "/run", b"")[0] == 405
    # The connection is still in sync after the errors.
    assert conn.init(HELLO)[0] == 200


# -- failures of the process itself ----------------------------------------------------------


def test_action_exiting_the_process_keeps_its_logs(
    proxy: ProxyProcess, conn: ProxyConnection
) -> None:
    conn.init("function main(a) {\n  console.log('last words');\n  process.exit(3);\n}\n")
    with pytest.raises((AssertionError, ConnectionError, OSError)):
        conn.run({}, "exit-1")  # the connection drops without an answer
    # The supervisor wrote what the activation logged, then went down with the worker.
    assert proxy.process.wait(timeout=5) == 3
    assert read_log(proxy.dir, "exit-1") == [("stdout", "last words")]
    assert "worker exited (code 3)" in (proxy.dir / "diag.txt").read_text()


def test_sigterm_stops_supervisor_and_worker(proxy: ProxyProcess, conn: ProxyConnection) -> None:
    conn.init("function main(a) { return { pid: process.pid }; }")
    worker_pid = conn.run({})[1]["pid"]
    assert worker_pid != proxy.process.pid
    begin = time.monotonic()
    proxy.process.send_signal(signal.SIGTERM)
    assert proxy.process.wait(timeout=5) == 0
    assert time.monotonic() - begin < 2  # at once; generous for a loaded machine
    deadline = time.monotonic() + 2
    while Path(f"/proc/{worker_pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    # Gone, or at most a zombie waiting for a reaper that is not an init process here.
    if Path(f"/proc/{worker_pid}").exists():
        assert "Z" in Path(f"/proc/{worker_pid}/stat").read_text().split()[2]


def test_proxy_diagnostics_go_to_the_supervisors_stderr(proxy: ProxyProcess) -> None:
    # The worker reports through the supervisor, so the line may follow the socket by a moment.
    deadline = time.monotonic() + 5
    diag = proxy.dir / "diag.txt"
    while f"listening on {proxy.socket}" not in diag.read_text():
        assert time.monotonic() < deadline, diag.read_text()
        time.sleep(0.01)
