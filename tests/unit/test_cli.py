"""The ``ft`` client: pure formatting and parsing, plus whole commands driven through ``main()``
against a small stdlib HTTP server that records each request and answers OpenWhisk-shaped JSON."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from cli import commands_server
from cli.commands_actions import format_action_summary
from cli.errors import CliError
from cli.main import main
from cli.output import format_activation_table, format_logs, go_duration, strip_log_line
from cli.params import collect_values, kind_for_file, parse_value
from funtainer import config as wskprops
from funtainer.config import normalize_apihost
from funtainer.names import InvalidName, parse_qualified_name

AUTH = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4Vr"
BASIC = "Basic " + base64.b64encode(AUTH.encode()).decode()
ACTIVATION_ID = "c7bb1339cb4f40e3a6ccead6c99f804e"
REPO_ROOT = Path(__file__).resolve().parents[2]


# --- a fake OpenWhisk API server ------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Canned:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


class FakeApi:
    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Canned] = {}
        self.requests: list[Recorded] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(
        self,
        method: str,
        path: str,
        body: Any = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.routes[(method, path)] = Canned(status, body, headers or {})

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                api.requests.append(
                    Recorded(
                        self.command,
                        url.path,
                        dict(parse_qsl(url.query)),
                        dict(self.headers.items()),
                        json.loads(raw) if raw else None,
                    )
                )
                canned = api.routes.get((self.command, url.path)) or Canned(
                    404, {"error": "The requested resource does not exist.", "code": "nf0001"}
                )
                payload = b"" if canned.body is None else json.dumps(canned.body).encode()
                self.send_response(canned.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in canned.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def props_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "wskprops"
    monkeypatch.setenv("WSK_CONFIG_FILE", str(path))
    return path


@pytest.fixture
def api(props_file: Path) -> Iterator[FakeApi]:
    fake = FakeApi()
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    props_file.write_text(f"APIHOST={fake.url}\nAUTH={AUTH}\n")
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join()


@pytest.fixture
def tls_api(props_file: Path, tmp_path: Path) -> Iterator[FakeApi]:
    """The fake API behind a self-signed certificate, as a private test cluster would be."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    fake = FakeApi()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    fake.server.socket = context.wrap_socket(fake.server.socket, server_side=True)
    fake.url = fake.url.replace("http://", "https://")
    thread = threading.Thread(target=fake.server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    props_file.write_text(f"APIHOST={fake.url}\nAUTH={AUTH}\n")
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    thread.join()


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Activation tables print local time; pin it."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def activation_record(**overrides: Any) -> dict[str, Any]:
    record = {
        "namespace": "guest",
        "name": "hello",
        "version": "0.0.1",
        "subject": "guest",
        "publish": False,
        "activationId": ACTIVATION_ID,
        "start": 1_718_000_000_000,
        "end": 1_718_000_000_004,
        "duration": 4,
        "response": {"status": "success", "success": True, "result": {"greeting": "hi"}},
        "logs": [],
        "annotations": [{"key": "kind", "value": "python:3.11"}],
    }
    record.update(overrides)
    return record


# --- settings file --------------------------------------------------------------------------


def test_wskprops_round_trip_keeps_unknown_keys(props_file: Path) -> None:
    props_file.write_text("APIGW_ACCESS_TOKEN=tok\n\nAPIHOST = http://h:1\nCERT=/c.pem\n")
    props = wskprops.read_props()
    assert props == {"APIGW_ACCESS_TOKEN": "tok", "APIHOST": "http://h:1", "CERT": "/c.pem"}
    props["AUTH"] = "a:b"
    wskprops.write_props(props)
    assert props_file.read_text() == (
        "APIGW_ACCESS_TOKEN=tok\nAPIHOST=http://h:1\nCERT=/c.pem\nAUTH=a:b\n"
    )
    assert stat.S_IMODE(os.stat(props_file).st_mode) == 0o600
    assert wskprops.read_props() == props


def test_property_set_get_unset(props_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    props_file.write_text("KEEP=me\n")
    code, out, _ = run(
        capsys,
        "property",
        "set",
        "--apihost",
        "http://127.0.0.1:9",
        "--auth",
        "u:k",
        "--namespace",
        "guest",
    )
    assert code == 0
    assert out == (
        "ok: whisk auth set. Run 'ft property get --auth' to see the new value.\n"
        "ok: whisk API host set to http://127.0.0.1:9\n"
        "ok: whisk namespace set to guest\n"
    )
    assert wskprops.read_props() == {
        "KEEP": "me",
        "AUTH": "u:k",
        "APIHOST": "http://127.0.0.1:9",
        "NAMESPACE": "guest",
    }

    code, out, _ = run(capsys, "property", "get", "--apihost", "--auth", "--namespace")
    assert (code, out) == (
        0,
        "whisk auth\t\tu:k\nwhisk API host\t\thttp://127.0.0.1:9\nwhisk namespace\t\tguest\n",
    )

    code, out, _ = run(capsys, "property", "unset", "--namespace", "--auth")
    assert code == 0
    assert out == (
        "ok: whisk auth unset.\nok: whisk namespace unset; the default value of _ will be used.\n"
    )
    assert wskprops.read_props() == {"KEEP": "me", "APIHOST": "http://127.0.0.1:9"}


def test_property_get_all_asks_the_api_for_build_info(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.route("GET", "/api/v1", {"api_version": "1.0.0", "build": "2026-01-01", "buildno": "7"})
    code, out, _ = run(capsys, "property", "get")
    assert code == 0
    assert out.splitlines() == [
        f"whisk auth\t\t{AUTH}",
        f"whisk API host\t\t{api.url}",
        "whisk API version\tv1",
        "whisk namespace\t\t_",
        f"whisk CLI version\t{out.splitlines()[4].split(chr(9))[-1]}",
        "whisk API build\t\t2026-01-01",
        "whisk API build number\t7",
    ]
    assert "Authorization" not in api.last.headers  # the info route is public


def test_flags_override_the_settings_file(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.route("GET", "/api/v1/namespaces/_/actions", [])
    code, _, _ = run(capsys, "action", "list", "--auth", "other:key")
    assert code == 0
    assert api.last.headers["Authorization"] == "Basic " + base64.b64encode(b"other:key").decode()
    code, _, _ = run(capsys, "-u", "x:y", "action", "list")  # before the subcommand too
    assert api.last.headers["Authorization"] == "Basic " + base64.b64encode(b"x:y").decode()


# --- parsing --------------------------------------------------------------------------------


def test_param_values_are_json_when_valid_json_else_strings() -> None:
    assert parse_value("3") == 3
    assert parse_value("hello") == "hello"
    assert parse_value('{"a":1}') == {"a": 1}
    assert parse_value("true") is True
    assert parse_value('"3"') == "3"
    assert parse_value("NaN") == "NaN"  # not JSON, so a string
    assert parse_value("") == ""


def test_param_file_then_flags_in_order(tmp_path: Path) -> None:
    params = tmp_path / "p.json"
    params.write_text('{"a": 1, "b": "file"}')
    values = collect_values([["b", "flag"], ["c", "[1,2]"]], str(params))
    assert values == {"a": 1, "b": "flag", "c": [1, 2]}
    params.write_text("[1]")
    with pytest.raises(CliError, match="must be a JSON object"):
        collect_values(None, str(params))


def test_kind_from_extension() -> None:
    assert kind_for_file("hello.py", None) == "python:default"
    assert kind_for_file("dir/hello.js", None) == "nodejs:default"
    assert kind_for_file("hello.py", "python:3.11") == "python:3.11"
    assert kind_for_file("bundle.zip", "python:default") == "python:default"
    with pytest.raises(CliError, match=r"\.zip artifact requires specifying the action kind"):
        kind_for_file("bundle.zip", None)
    with pytest.raises(CliError, match=r"'\.txt' is not a supported action runtime"):
        kind_for_file("notes.txt", None)


def test_apihost_without_scheme_means_https() -> None:
    assert normalize_apihost("openwhisk.example.com") == "https://openwhisk.example.com"
    assert normalize_apihost("127.0.0.1:3233") == "https://127.0.0.1:3233"
    assert normalize_apihost("http://127.0.0.1:3233/") == "http://127.0.0.1:3233"


def test_qualified_names() -> None:
    name = parse_qualified_name("hello", "_")
    assert (name.namespace, name.package, name.name, name.entity) == ("_", None, "hello", "hello")
    name = parse_qualified_name("utils/echo", "_")
    assert (name.namespace, name.entity) == ("_", "utils/echo")
    name = parse_qualified_name("/whisk.system/utils/echo", "_")
    assert (name.namespace, name.package, name.name) == ("whisk.system", "utils", "echo")
    assert parse_qualified_name("/guest/hello", "_").namespace == "guest"
    assert parse_qualified_name("a b?", "_").entity_path == "a%20b%3F"
    for bad in ("", "/", "/onlyns", "a//b", "a/b/c/d"):
        with pytest.raises(InvalidName):
            parse_qualified_name(bad, "_")


# --- output formatting ----------------------------------------------------------------------


def test_go_duration_matches_wsk_duration_column() -> None:
    assert [go_duration(ms) for ms in (0, 7, 999, 1000, 1500, 61_040, 3_600_000)] == [
        "0s",
        "7ms",
        "999ms",
        "1s",
        "1.5s",
        "1m1.04s",
        "1h0m0s",
    ]


def test_activation_table(utc: None) -> None:
    rows = [
        activation_record(
            statusCode=0,
            annotations=[
                {"key": "kind", "value": "python:3.11"},
                {"key": "initTime", "value": 312},
            ],
        ),
        activation_record(
            activationId="0" * 32,
            statusCode=2,
            start=1_718_000_061_000,
            end=1_718_000_062_500,
            duration=1500,
            version="0.0.2",
        ),
        activation_record(
            activationId="1" * 32,
            name="trig",
            statusCode=0,
            annotations=[],
            end=None,
            duration=None,
        ),
    ]
    assert format_activation_table(rows).splitlines() == [
        "Datetime            Activation ID                    Kind        Start Duration   "
        "Status          Entity",
        f"2024-06-10 06:13:20 {ACTIVATION_ID} python:3.11 cold  4ms        "
        "success         guest/hello:0.0.1",
        f"2024-06-10 06:14:21 {'0' * 32} python:3.11 warm  1.5s       "
        "developer error guest/hello:0.0.2",
        f"2024-06-10 06:13:20 {'1' * 32} unknown     warm  0s         "
        "success         guest/trig:0.0.1",
    ]


def test_action_summary_marks_bound_parameters() -> None:
    action = {
        "namespace": "guest",
        "name": "hello",
        "parameters": [{"key": "name", "value": "World"}],
        "annotations": [{"key": "parameters", "value": [{"name": "greeting"}]}],
    }
    assert format_action_summary(action) == (
        "action /guest/hello: Returns a result based on parameters greeting and name\n"
        "   (parameters: greeting, *name)"
    )
    action["annotations"] = [
        {"key": "description", "value": "Says hi"},
        {"key": "final", "value": True},
    ]
    assert format_action_summary(action) == (
        "action /guest/hello: Says hi\n   (parameters: **name)"
    )
    assert format_action_summary({"namespace": "guest", "name": "bare"}) == (
        "action /guest/bare\n   (parameters: none defined)"
    )


def test_logs_strip_removes_timestamp_and_stream() -> None:
    lines = [
        "2024-06-10T12:00:00.123456789Z  stdout: hello from action",
        "2024-06-10T12:00:00.2Z         stderr: oops: it broke",
        "a line without a prefix",
    ]
    assert strip_log_line(lines[0]) == "hello from action"
    assert format_logs(lines, strip=True) == (
        "hello from action\noops: it broke\na line without a prefix"
    )
    assert format_logs(lines, strip=False) == "\n".join(lines)


# --- actions against the fake API -----------------------------------------------------------


def test_action_create_sends_wsk_request(
    api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code_file = tmp_path / "hello.py"
    code_file.write_text("def main(args):\n    return args\n")
    api.route("PUT", "/api/v1/namespaces/_/actions/hello", {"name": "hello"})
    code, out, err = run(
        capsys,
        "action",
        "create",
        "hello",
        str(code_file),
        "-p",
        "n",
        "3",
        "-p",
        "s",
        "hello",
        "-p",
        "o",
        '{"a":1}',
        "-a",
        "description",
        "says hello",
        "-t",
        "3000",
        "-m",
        "128",
    )
    assert (code, out, err) == (0, "ok: created action hello\n", "")
    sent = api.last
    assert (sent.method, sent.path, sent.query) == (
        "PUT",
        "/api/v1/namespaces/_/actions/hello",
        {"overwrite": "false"},
    )
    assert sent.headers["Authorization"] == BASIC
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.body == {
        "namespace": "_",
        "name": "hello",
        "exec": {"kind": "python:default", "code": "def main(args):\n    return args\n"},
        "parameters": [
            {"key": "n", "value": 3},
            {"key": "s", "value": "hello"},
            {"key": "o", "value": {"a": 1}},
        ],
        "annotations": [{"key": "description", "value": "says hello"}],
        "limits": {"timeout": 3000, "memory": 128},
    }


def test_action_create_zip_is_base64_and_needs_kind(
    api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "bundle.zip"
    archive.write_bytes(b"PK\x03\x04\x00\xffbinary")
    api.route("PUT", "/api/v1/namespaces/_/actions/zipped", {"name": "zipped"})
    code, _, err = run(capsys, "action", "create", "zipped", str(archive))
    assert code == 1
    assert err.startswith("error: creating an action from a .zip artifact requires")
    assert api.requests == []

    code, out, _ = run(
        capsys,
        "action",
        "create",
        "zipped",
        str(archive),
        "--kind",
        "python:3.11",
        "--main",
        "entry",
    )
    assert (code, out) == (0, "ok: created action zipped\n")
    assert api.last.body["exec"] == {
        "kind": "python:3.11",
        "code": base64.b64encode(b"PK\x03\x04\x00\xffbinary").decode(),
        "main": "entry",
    }


def test_action_update_overwrites_and_file_is_optional(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.route("PUT", "/api/v1/namespaces/_/actions/hello", {"name": "hello"})
    code, out, _ = run(capsys, "action", "update", "hello", "-p", "name", "World")
    assert (code, out) == (0, "ok: updated action hello\n")
    assert api.last.query == {"overwrite": "true"}
    assert api.last.body == {
        "namespace": "_",
        "name": "hello",
        "parameters": [{"key": "name", "value": "World"}],
    }


def test_api_error_is_one_line_with_the_server_code(
    api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code_file = tmp_path / "x.js"
    code_file.write_text("function main() { return {} }")
    api.route(
        "PUT",
        "/api/v1/namespaces/_/actions/x",
        {"error": "resource already exists", "code": "8f3c0d2a9b"},
        status=409,
    )
    code, out, err = run(capsys, "action", "create", "x", str(code_file))
    assert (code, out) == (2, "")
    assert err == "error: Unable to create action 'x': resource already exists (code 8f3c0d2a9b)\n"
    assert api.last.body["exec"]["kind"] == "nodejs:default"


def test_unreachable_host_is_exit_3(props_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port any more.
    code, out, err = run(
        capsys, "action", "list", "--apihost", f"http://127.0.0.1:{port}", "-u", AUTH
    )
    assert (code, out) == (3, "")
    assert err == (
        f"error: cannot reach the API host http://127.0.0.1:{port}: connection refused. "
        "Is it running? (ft up)\n"
    )


def test_insecure_skips_certificate_checks(
    tls_api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    tls_api.route("GET", "/api/v1/namespaces/_/actions", [])
    code, out, err = run(capsys, "action", "list")
    assert (code, out) == (3, "")
    assert err.startswith(f"error: cannot reach the API host {tls_api.url}: ")
    assert "CERTIFICATE_VERIFY_FAILED" in err and "--insecure" in err
    code, out, _ = run(capsys, "action", "list", "--insecure")
    assert (code, out) == (0, "actions\n")
    assert tls_api.last.headers["Authorization"] == BASIC


def test_missing_auth_is_a_usage_error(
    props_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    props_file.write_text("APIHOST=http://127.0.0.1:9\n")
    code, _, err = run(capsys, "action", "invoke", "hello")
    assert code == 1
    assert err.startswith("error: Authorization key is not configured (--auth is required).")


def test_action_get_delete_and_list(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    action = {
        "namespace": "guest",
        "name": "hello",
        "version": "0.0.1",
        "publish": False,
        "exec": {"kind": "python:3.11", "binary": False},
        "annotations": [{"key": "exec", "value": "python:3.11"}],
        "limits": {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1},
        "parameters": [],
        "updated": 1_718_000_000_000,
    }
    api.route("GET", "/api/v1/namespaces/_/actions/hello", action)
    code, out, _ = run(capsys, "action", "get", "hello")
    assert code == 0
    assert out == "ok: got action hello\n" + json.dumps(action, indent=4) + "\n"
    assert api.last.query == {"code": "false"}

    code, out, _ = run(capsys, "action", "get", "hello", "limits")
    assert (
        out
        == "ok: got action hello, displaying field limits\n"
        + json.dumps(action["limits"], indent=4)
        + "\n"
    )
    code, _, err = run(capsys, "action", "get", "hello", "nonsense")
    assert (code, err) == (1, "error: Invalid field filter 'nonsense'.\n")

    api.route("DELETE", "/api/v1/namespaces/_/actions/hello", action)
    code, out, _ = run(capsys, "action", "delete", "hello")
    assert (code, out) == (0, "ok: deleted action hello\n")
    assert api.last.method == "DELETE"

    packaged = dict(action, namespace="guest/utils", name="echo")
    packaged["annotations"] = [{"key": "exec", "value": "nodejs:18"}]
    api.route("GET", "/api/v1/namespaces/_/actions", [packaged, action])
    code, out, _ = run(capsys, "action", "list", "--limit", "5", "--name-sort")
    assert code == 0
    assert api.last.query == {"limit": "5", "skip": "0"}
    assert out.splitlines() == [
        "actions",
        f"{'/guest/hello':<70} private python:3.11",
        f"{'/guest/utils/echo':<70} private nodejs:18",
    ]

    code, _, err = run(capsys, "action", "get", "gone")
    assert code == 2
    assert err == (
        "error: Unable to get action 'gone': The requested resource does not exist. (code nf0001)\n"
    )


def test_invoke_non_blocking(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.route(
        "POST",
        "/api/v1/namespaces/_/actions/hello",
        {"activationId": ACTIVATION_ID},
        status=202,
    )
    code, out, _ = run(capsys, "action", "invoke", "hello", "-p", "name", "Jane")
    assert (code, out) == (0, f"ok: invoked /_/hello with id {ACTIVATION_ID}\n")
    sent = api.last
    assert (sent.method, sent.path) == ("POST", "/api/v1/namespaces/_/actions/hello")
    assert sent.query == {"blocking": "false", "result": "false"}
    assert sent.body == {"name": "Jane"}
    assert sent.headers["Authorization"] == BASIC


def test_invoke_result_and_blocking(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.route("POST", "/api/v1/namespaces/_/actions/hello", {"greeting": "Hello Jane"})
    code, out, _ = run(capsys, "action", "invoke", "hello", "-r")
    assert (code, out) == (0, '{\n    "greeting": "Hello Jane"\n}\n')
    assert api.last.query == {"blocking": "true", "result": "true"}
    assert api.last.body == {}

    record = activation_record()
    api.route("POST", "/api/v1/namespaces/_/actions/hello", record)
    code, out, _ = run(capsys, "action", "invoke", "hello", "--blocking")
    assert code == 0
    assert (
        out
        == f"ok: invoked /_/hello with id {ACTIVATION_ID}\n" + json.dumps(record, indent=4) + "\n"
    )
    assert api.last.query == {"blocking": "true", "result": "false"}


def test_invoke_blocking_not_finished(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.route(
        "POST",
        "/api/v1/namespaces/_/actions/slow",
        {"activationId": ACTIVATION_ID},
        status=202,
    )
    code, out, err = run(capsys, "action", "invoke", "slow", "-r")
    assert (code, out) == (4, "")
    assert err == (
        f"ok: invoked /_/slow, but the request has not yet finished, with id {ACTIVATION_ID}\n"
    )


def test_invoke_failed_activation_is_printed_and_fails(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    failed = activation_record(
        response={
            "status": "application error",
            "success": False,
            "result": {"error": "bad input"},
        },
    )
    api.route("POST", "/api/v1/namespaces/_/actions/hello", failed, status=502)
    code, out, err = run(capsys, "action", "invoke", "hello", "-b")
    assert (code, out) == (2, "")
    assert (
        err
        == f"ok: invoked /_/hello with id {ACTIVATION_ID}\n" + json.dumps(failed, indent=4) + "\n"
    )

    api.route("POST", "/api/v1/namespaces/_/actions/hello", {"error": "bad input"}, status=502)
    code, out, err = run(capsys, "action", "invoke", "hello", "-r")
    assert (code, out, err) == (2, "", '{\n    "error": "bad input"\n}\n')

    overloaded = {"error": "The server is currently unavailable.", "code": "tx503"}
    api.route("POST", "/api/v1/namespaces/_/actions/hello", overloaded, status=503)
    code, out, err = run(capsys, "action", "invoke", "hello", "-r")
    assert (code, out) == (2, "")
    assert err == (
        "error: Unable to invoke action 'hello': The server is currently unavailable. "
        "(code tx503)\n"
    )


def test_verbose_traces_and_truncates_bodies(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    api.route("POST", "/api/v1/namespaces/_/actions/hello", {"big": "x" * 2000})
    code, out, _ = run(capsys, "action", "invoke", "hello", "-r", "-v", "-p", "k", "v")
    assert code == 0
    assert f"[POST]\t{api.url}/api/v1/namespaces/_/actions/hello?blocking=true&result=true" in out
    assert '"Authorization": "Basic ***"' in out
    assert AUTH not in out and BASIC not in out
    assert 'Req Body\n{"k": "v"}\n' in out
    assert "RESPONSE:Got response with code 200" in out
    traced = out.split("Response body received:\n", 1)[1].split("\n", 1)[0]
    assert len(traced) == 1003 and traced.endswith("...")


# --- activations against the fake API -------------------------------------------------------


def test_activation_list(api: FakeApi, utc: None, capsys: pytest.CaptureFixture[str]) -> None:
    summary = activation_record(statusCode=1)
    del summary["response"], summary["logs"]
    api.route("GET", "/api/v1/namespaces/_/activations", [summary])
    code, out, _ = run(
        capsys,
        "activation",
        "list",
        "hello",
        "--limit",
        "5",
        "--skip",
        "1",
        "--since",
        "10",
        "--upto",
        "20",
    )
    assert code == 0
    assert api.last.query == {
        "limit": "5",
        "skip": "1",
        "name": "hello",
        "since": "10",
        "upto": "20",
    }
    assert out.splitlines()[1] == (
        f"2024-06-10 06:13:20 {ACTIVATION_ID} python:3.11 warm  4ms        "
        "application error guest/hello:0.0.1"
    )

    code, out, _ = run(capsys, "activation", "list", "--full")
    assert api.last.query == {"limit": "30", "skip": "0", "docs": "true"}
    assert out == "activations\n" + json.dumps(summary, indent=4) + "\n"


def test_activation_get_result_logs_with_last(
    api: FakeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    record = activation_record(logs=["2024-06-10T12:00:00.123456789Z  stdout: hello from action"])
    api.route("GET", "/api/v1/namespaces/_/activations", [{"activationId": ACTIVATION_ID}])
    api.route("GET", f"/api/v1/namespaces/_/activations/{ACTIVATION_ID}", record)
    api.route(
        "GET",
        f"/api/v1/namespaces/_/activations/{ACTIVATION_ID}/result",
        {"result": {"greeting": "hi"}, "success": True, "status": "success"},
    )
    api.route(
        "GET", f"/api/v1/namespaces/_/activations/{ACTIVATION_ID}/logs", {"logs": record["logs"]}
    )

    code, out, _ = run(capsys, "activation", "get", "--last")
    assert code == 0
    assert out == f"ok: got activation {ACTIVATION_ID}\n" + json.dumps(record, indent=4) + "\n"
    listing, fetch = api.requests[-2:]
    assert (listing.path, listing.query) == (
        "/api/v1/namespaces/_/activations",
        {"limit": "1", "skip": "0"},
    )
    assert fetch.path == f"/api/v1/namespaces/_/activations/{ACTIVATION_ID}"

    code, out, _ = run(capsys, "activation", "get", ACTIVATION_ID, "response")
    assert out.startswith(f"ok: got activation {ACTIVATION_ID}, displaying field response\n")

    code, out, _ = run(capsys, "activation", "result", ACTIVATION_ID)
    assert (code, out) == (0, '{\n    "greeting": "hi"\n}\n')

    code, out, _ = run(capsys, "activation", "logs", "--last")
    assert (code, out) == (0, record["logs"][0] + "\n")
    code, out, _ = run(capsys, "activation", "logs", ACTIVATION_ID, "--strip")
    assert (code, out) == (0, "hello from action\n")


def test_last_with_no_activations(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.route("GET", "/api/v1/namespaces/_/activations", [])
    code, _, err = run(capsys, "activation", "result", "--last")
    assert code == 1
    assert err == (
        "error: Unable to get result for activation: "
        "Activation list does not contain any activations.\n"
    )


def test_activation_missing_id(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "activation", "get")
    assert (code, err) == (1, "error: Invalid argument(s). An activation ID is required.\n")


# --- the command tree -----------------------------------------------------------------------


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "exit codes:" in out and "action" in out and "activation" in out
    code, out, _ = run(capsys, "action", "--help")
    assert code == 0
    assert all(verb in out for verb in ("create", "update", "invoke", "get", "delete", "list"))
    code, _, err = run(capsys, "action", "create", "only-a-name")
    assert code == 1
    assert "error: the following arguments are required: ACTION" in err
    code, _, err = run(capsys, "action", "list", "--bogus")
    assert (code, err.splitlines()[-1]) == (1, "error: unrecognized arguments: --bogus")


def test_server_commands_import_lazily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(CliError, match="not available in this installation"):
        commands_server._entry_point("thing", "cli.no_such_module", "main")
    # A module that exists but lacks a dependency is a bug, not "not installed".
    (tmp_path / "ft_broken_service.py").write_text("import ft_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="ft_missing_dependency"):
        commands_server._entry_point("thing", "ft_broken_service", "run")


def test_runnable_as_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "action", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "invoke" in done.stdout
