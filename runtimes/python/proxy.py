"""Funtainer's Python action proxy: OpenWhisk's action protocol (POST /init, POST /run) over
HTTP/1.1 on a Unix socket in FT_PROXY_DIR, with the action running in this very process.

Standard library only: it runs under whatever python3 the runtime image has. Logs are captured
without any engine API: fds 1 and 2 are pipes read by two threads, and each activation's lines
are written to FT_PROXY_DIR/logs/<activation id>.log before its response is sent.
"""

from __future__ import annotations

import sys

# The root filesystem is read-only: never try to write .pyc files next to the action.
sys.dont_write_bytecode = True

import json  # noqa: E402
import os  # noqa: E402
import selectors  # noqa: E402
import signal  # noqa: E402
import socketserver  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from http.server import BaseHTTPRequestHandler  # noqa: E402
from typing import Any  # noqa: E402

SENTINEL = b"XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
LOG_LIMIT = 10 * 1024 * 1024
TRUNCATED = f"Logs were truncated because the total bytes size exceeds the limit of {LOG_LIMIT} bytes."
MAX_PARTIAL = 64 * 1024  # a longer line without newline is emitted in pieces
SENTINEL_WAIT_S = 2.0
MODULE_NAME = "main__"  # the action's module, as in OpenWhisk's launcher: not "__main__"

NOT_A_RESULT = "The action did not return a dictionary or array."
NO_CODE = "Missing main/no code to execute."


# The proxy's own diagnostics go to the container's original stderr (`docker logs`), never
# into an activation's logs; taken before fd 2 becomes a log pipe.
DIAG_FD = os.dup(2)


def _diag(message: str) -> None:
    try:
        os.write(DIAG_FD, f"ft-proxy: {message}\n".encode(errors="replace"))
    except OSError:
        pass


class LogCapture:
    """Turns fds 1 and 2 into pipes so that the action, and every process it spawns, writes
    into them; two threads turn what arrives into OpenWhisk log lines."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._lines: list[str] = []
        self._size = 0
        self._truncated = False
        self._seen = [0, 0]  # sentinels read, per stream
        self._expected = [0, 0]  # sentinels written, per stream
        self._stamp_cache = (-1, "")
        self._keep: list[int] = []  # our own ends, to restore fd 1/2 if an action closes them
        self._ino: list[int] = []
        for index, (fd, stream) in enumerate(((1, "stdout"), (2, "stderr"))):
            read_fd, write_fd = os.pipe()  # both non-inheritable
            os.dup2(write_fd, fd)  # inheritable: spawned processes log here too
            self._keep.append(write_fd)
            self._ino.append(os.fstat(write_fd).st_ino)
            threading.Thread(
                target=self._reader, args=(index, read_fd, stream), name=stream, daemon=True
            ).start()
        # Line-buffered so that a print shows up as soon as it is made, as on a terminal.
        self.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                           closefd=False)
        self.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace",
                           closefd=False)
        sys.stdout, sys.stderr = self.stdout, self.stderr

    def _stamp(self, ns: int) -> str:
        seconds = ns // 1_000_000_000
        cached_seconds, prefix = self._stamp_cache
        if seconds != cached_seconds:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
            self._stamp_cache = (seconds, prefix)
        return f"{prefix}.{ns % 1_000_000_000:09d}Z"

    def _reader(self, index: int, fd: int, stream: str) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\n")
            if len(pending) > MAX_PARTIAL:
                lines.append(pending)
                pending = b""
            if lines:
                self._add(index, stream, lines, time.time_ns())

    def _add(self, index: int, stream: str, lines: list[bytes], ns: int) -> None:
        stamp = self._stamp(ns)
        with self._cond:
            sentinels = 0
            for line in lines:
                if line.endswith(SENTINEL):
                    # Whatever preceded the sentinel on its line is a last partial line.
                    sentinels += 1
                    line = line[: -len(SENTINEL)]
                    if not line:
                        continue
                if self._truncated:
                    continue
                self._size += len(line) + 1
                if self._size > LOG_LIMIT:
                    self._truncated = True
                    continue
                text = line.decode("utf-8", "replace")
                if text.endswith("\r"):
                    text = text[:-1]
                self._lines.append(f"{stamp:<30} {stream}: {text}")
            if sentinels:
                self._seen[index] += sentinels
                self._cond.notify_all()

    def collect(self) -> list[str]:
        """Mark the end of an activation on both streams, wait until both readers got there,
        and hand over everything logged up to that point."""
        for stream in (sys.stdout, sys.stderr, self.stdout, self.stderr):
            try:
                stream.flush()
            except Exception:  # an action may have replaced or closed them
                pass
        for index, fd in enumerate((1, 2)):
            self._repair(index, fd)
            try:
                os.write(fd, SENTINEL + b"\n")
                self._expected[index] += 1
            except OSError:
                pass
        with self._cond:
            if not self._cond.wait_for(self._caught_up, SENTINEL_WAIT_S):
                _diag("log sentinel not seen in time; logs of this activation may be incomplete")
                # Don't wait for these again on every later activation.
                self._expected = [max(e, s) for e, s in zip(self._expected, self._seen)]
            lines, self._lines, self._size = self._lines, [], 0
            if self._truncated:
                self._truncated = False
                lines.append(f"{self._stamp(time.time_ns()):<30} stderr: {TRUNCATED}")
        return lines

    def _caught_up(self) -> bool:
        return self._seen[0] >= self._expected[0] and self._seen[1] >= self._expected[1]

    def _repair(self, index: int, fd: int) -> None:
        """An action that closed or redirected fd 1/2 would lose every later log line and
        make each activation wait for a sentinel that never comes: point it back at its pipe."""
        try:
            if os.fstat(fd).st_ino == self._ino[index]:
                return
        except OSError:
            pass
        os.dup2(self._keep[index], fd)


class InitError(Exception):
    """/init failed; the message is the error returned to the invoker."""


def _error(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": message}).encode()


def _env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, separators=(",", ":"))


class Proxy:
    """The action's state: nothing until /init, then its entry point."""

    def __init__(self, proxy_dir: str, logs: LogCapture) -> None:
        self.log_dir = os.path.join(proxy_dir, "logs")
        self.logs = logs
        self.main: Any = None

    # -- /init -------------------------------------------------------------------------------

    def init(self, message: dict[str, Any]) -> tuple[int, bytes]:
        if self.main is not None:
            return _error(403, "Cannot initialize the action more than once.")
        value = message.get("value")
        if not isinstance(value, dict):
            return _error(400, "The init request has no 'value' object.")
        env = value.get("env") or {}
        activation_id = env.get("__OW_ACTIVATION_ID") if isinstance(env, dict) else None
        try:
            if not isinstance(env, dict):
                raise InitError("The init request's 'env' is not an object.")
            for key, item in env.items():
                os.environ[str(key)] = _env_value(item)
            self.main = self._load(value)
        except InitError as exc:
            print(f"Action initialization failed: {exc}", file=self.logs.stderr)
            self._write_logs(activation_id, self.logs.collect())
            return _error(502, str(exc))
        except Exception as exc:  # e.g. a NUL byte in an env value
            self._print_traceback()
            self._write_logs(activation_id, self.logs.collect())
            return _error(502, f"The action failed during initialization: {exc}")
        # Lines logged while initializing stay buffered and go out with the first /run.
        return 200, b'{"ok":true}'

    def _load(self, value: dict[str, Any]) -> Any:
        code = value.get("code")
        if not code or (isinstance(code, str) and not code.strip()):
            raise InitError(NO_CODE)
        if not isinstance(code, str):
            raise InitError("The action's code is not a string.")
        entry = value.get("main") or "main"
        if value.get("binary"):
            namespace = self._load_zip(code)
        else:
            namespace = self._load_source(code)
        function = namespace.get(entry)
        if not callable(function):
            raise InitError(f"Action entrypoint '{entry}' is not a function.")
        return function

    def _load_source(self, code: str) -> dict[str, Any]:
        import linecache

        filename = "__main__.py"
        # Tracebacks then show the action's source lines although there is no file.
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        module = type(sys)(MODULE_NAME)
        module.__file__ = filename
        sys.modules[MODULE_NAME] = module  # dataclasses and pickle look modules up there
        try:
            compiled = compile(code, filename, "exec")
        except SyntaxError as exc:
            self._print_traceback()
            raise InitError(f"The action's code has a syntax error: {exc}") from exc
        self._execute(lambda: exec(compiled, module.__dict__))
        return module.__dict__

    def _load_zip(self, code: str) -> dict[str, Any]:
        import base64
        import binascii
        import glob
        import importlib.util
        import io
        import tempfile
        import zipfile

        try:
            archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(code)))
        except (binascii.Error, ValueError, zipfile.BadZipFile) as exc:
            raise InitError(f"The action's code is not a valid base64-encoded zip: {exc}") from exc
        if "__main__.py" not in archive.namelist():
            raise InitError("The action's zip file does not include __main__.py.")
        # /tmp is the only writable place in the container besides the proxy directory.
        root = tempfile.mkdtemp(prefix="action-")
        try:
            archive.extractall(root)
        except (OSError, zipfile.BadZipFile, RuntimeError) as exc:
            raise InitError(f"The action's zip file could not be extracted: {exc}") from exc
        sys.path.insert(0, root)
        venvs = sorted(glob.glob(os.path.join(root, "virtualenv/lib/python3*/site-packages")))
        for site_dir in venvs:
            sys.path.insert(1, site_dir)
        if venvs:
            import site

            for site_dir in venvs:
                site.addsitedir(site_dir)  # .pth files (namespace packages and the like)
        os.chdir(root)  # relative paths in the action then find its own files
        path = os.path.join(root, "__main__.py")
        spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODULE_NAME] = module
        try:
            self._execute(lambda: spec.loader.exec_module(module))  # type: ignore[union-attr]
        except InitError as exc:
            if isinstance(exc.__cause__, SyntaxError):
                raise InitError(f"The action's code has a syntax error: {exc.__cause__}") from exc
            raise
        return module.__dict__

    def _execute(self, run: Any) -> None:
        try:
            run()
        except (Exception, SystemExit) as exc:
            self._print_traceback()
            raise InitError(f"The action failed during initialization: {exc!r}") from exc

    # -- /run --------------------------------------------------------------------------------

    def run(self, message: dict[str, Any]) -> tuple[int, bytes]:
        if self.main is None:
            return _error(403, "Cannot run an uninitialized action.")
        for key, item in message.items():
            if key != "value":
                os.environ["__OW_" + key.upper()] = _env_value(item)
        status: int
        result: Any
        try:
            result = self.main(message.get("value", {}))
        except Exception as exc:
            # OpenWhisk's launcher: an exception is the action's own (application) error.
            self._print_traceback()
            status, result = 200, {"error": str(exc) or type(exc).__name__}
        except SystemExit as exc:
            self._print_traceback()
            status, result = 502, {"error": f"The action exited (status {exc.code!r})."}
        else:
            status = 200
            if not isinstance(result, dict | list):
                status, result = 502, {"error": NOT_A_RESULT}
        try:
            # allow_nan=False: NaN and Infinity are not JSON, the invoker could not parse them.
            body = json.dumps(result, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            print(f"The action's result is not JSON serializable: {exc}", file=self.logs.stderr)
            status, body = _error(502, f"The action's result is not JSON serializable: {exc}")
        self._write_logs(message.get("activation_id"), self.logs.collect())
        return status, body

    # -- helpers -----------------------------------------------------------------------------

    def _print_traceback(self) -> None:
        import traceback

        # To our own stderr wrapper: the action may have replaced sys.stderr.
        traceback.print_exc(file=self.logs.stderr)
        self.logs.stderr.flush()

    def _write_logs(self, activation_id: Any, lines: list[str]) -> None:
        """Write atomically (temp name, then rename): the invoker must never read half a file."""
        if not (isinstance(activation_id, str) and activation_id.isascii()
                and activation_id.replace("-", "").replace("_", "").isalnum()):
            if lines:
                _diag(f"no usable activation id ({activation_id!r}): {len(lines)} log lines dropped")
            return
        path = os.path.join(self.log_dir, activation_id + ".log")
        temp = os.path.join(self.log_dir, f".{activation_id}.tmp")
        data = ("\n".join(lines) + "\n").encode("utf-8", "replace") if lines else b""
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.rename(temp, path)
        except OSError as exc:
            _diag(f"cannot write {path}: {exc}")
