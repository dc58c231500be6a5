"""Funtainer's Python action proxy: OpenWhisk's action protocol (POST /init, POST /run) over
HTTP/1.1 on a Unix socket in FT_PROXY_DIR, with the action running in this very process.

Standard library only: it runs under whatever python3 the runtime image has. Logs are captured
without any engine API (_ft_logs.py): fds 1 and 2 are pipes read by two threads, and each
activation's lines are written to FT_PROXY_DIR/logs/<activation id>.log (no file when there
are none) before its response is sent. The HTTP side is in _ft_http.py.
"""

from __future__ import annotations

import os
import sys

# The root filesystem is read-only: never try to write .pyc files next to the action.
sys.dont_write_bytecode = True
# Our modules sit beside this script; the entry point runs with -P, so the directory is put on
# sys.path only for these imports and cannot shadow the action's own modules afterwards.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import json  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402

from _ft_http import ProxyServer, error  # noqa: E402
from _ft_logs import LOG_FILE_LIMIT, LogCapture, diag  # noqa: E402

del sys.path[0]

MODULE_NAME = "main__"  # the action's module, as in OpenWhisk's launcher: not "__main__"
NOT_A_RESULT = "The action did not return a dictionary or array."
NO_CODE = "Missing main/no code to execute."
BAKED_ACTION_DIR = os.environ.get("FT_ACTION_DIR", "/action")


class InitError(Exception):
    """/init failed; the message is the error returned to the invoker."""


def _is_ours(code: object) -> bool:
    filename = getattr(code, "co_filename", "")
    return filename == __file__ or filename.startswith("<frozen importlib")


def _end_if_forked(pid: int) -> None:
    """A process the action forked (os.fork without exec) that returns or raises out of the
    action lands back in this proxy, holding copies of its sockets: it must end here, or it
    would answer the invoker in the proxy's place (the next activation would get this one's
    answer) and serve requests beside it. Nothing is flushed: a lock another thread held at
    fork time stays held in the copy, and stdout is line-buffered anyway."""
    if os.getpid() != pid:
        os._exit(0)


def _env_value(value: object) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, separators=(",", ":"))


class Proxy:
    """The action's state: nothing until /init, then its entry point."""

    def __init__(self, proxy_dir: str, logs: LogCapture) -> None:
        self.log_dir = os.path.join(proxy_dir, "logs")
        self.logs = logs
        self.main: Callable[[object], object] | None = None

    # -- /init -------------------------------------------------------------------------------

    def init(self, message: dict[str, object]) -> tuple[int, bytes]:
        if self.main is not None:
            return error(403, "Cannot initialize the action more than once.")
        value = message.get("value")
        if not isinstance(value, dict):
            return error(400, "The init request has no 'value' object.")
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
            return error(502, str(exc))
        except Exception as exc:  # e.g. a NUL byte in an env value
            self._print_traceback()
            self._write_logs(activation_id, self.logs.collect())
            return error(502, f"The action failed during initialization: {exc}")
        # Lines logged while initializing stay buffered and go out with the first /run.
        return 200, b'{"ok":true}'

    def _load(self, value: dict[str, object]) -> Callable[[object], object]:
        code = value.get("code")
        entry = value.get("main") or "main"
        if not code and os.path.isfile(os.path.join(BAKED_ACTION_DIR, "__main__.py")):
            # A blackbox image built on this one may carry its action instead of sending it.
            namespace = self._load_directory(BAKED_ACTION_DIR)
        elif not code or (isinstance(code, str) and not code.strip()):
            raise InitError(NO_CODE)
        elif not isinstance(code, str):
            raise InitError("The action's code is not a string.")
        elif value.get("binary"):
            namespace = self._load_zip(code)
        else:
            namespace = self._load_source(code)
        function = namespace.get(entry)
        if not callable(function):
            raise InitError(f"Action entrypoint '{entry}' is not a function.")
        return function

    def _load_source(self, code: str) -> dict[str, object]:
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

    def _load_zip(self, code: str) -> dict[str, object]:
        import base64
        import binascii
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
        return self._load_directory(root)

    def _load_directory(self, root: str) -> dict[str, object]:
        """``root/__main__.py`` as the action's module, with ``root`` (and a virtualenv in
        it) importable."""
        import glob
        import importlib.util

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

    def _execute(self, run: Callable[[], object]) -> None:
        pid = os.getpid()
        try:
            run()
        except (Exception, SystemExit) as exc:
            _end_if_forked(pid)
            self._print_traceback()
            raise InitError(f"The action failed during initialization: {exc!r}") from exc
        _end_if_forked(pid)

    # -- /run --------------------------------------------------------------------------------

    def run(self, message: dict[str, object]) -> tuple[int, bytes]:
        if self.main is None:
            return error(403, "Cannot run an uninitialized action.")
        for key, item in message.items():
            if key != "value":
                os.environ["__OW_" + key.upper()] = _env_value(item)
        status: int
        result: object
        pid = os.getpid()
        try:
            result = self.main(message.get("value", {}))
        except Exception as exc:
            _end_if_forked(pid)
            # OpenWhisk's launcher: an exception is the action's own (application) error.
            self._print_traceback()
            status, result = 200, {"error": str(exc) or type(exc).__name__}
        except SystemExit as exc:
            _end_if_forked(pid)
            self._print_traceback()
            status, result = 502, {"error": f"The action exited (status {exc.code!r})."}
        else:
            _end_if_forked(pid)
            status = 200
            if not isinstance(result, dict | list):
                status, result = 502, {"error": NOT_A_RESULT}
        try:
            # allow_nan=False: NaN and Infinity are not JSON, the invoker could not parse them.
            body = json.dumps(result, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            print(f"The action's result is not JSON serializable: {exc}", file=self.logs.stderr)
            status, body = error(502, f"The action's result is not JSON serializable: {exc}")
        self._write_logs(message.get("activation_id"), self.logs.collect())
        return status, body

    # -- helpers -----------------------------------------------------------------------------

    def _print_traceback(self) -> None:
        """The current exception's traceback, into the activation's log, without the frames
        of the proxy and of importlib that lead into the action's code."""
        import traceback

        exc = sys.exception()
        if exc is None:
            return
        tb = exc.__traceback__
        while tb is not None and _is_ours(tb.tb_frame.f_code):
            tb = tb.tb_next
        # To our own stderr wrapper: the action may have replaced sys.stderr.
        traceback.print_exception(type(exc), exc, tb, file=self.logs.stderr)
        self.logs.stderr.flush()

    def _write_logs(self, activation_id: object, lines: list[str]) -> None:
        """Write atomically (temp name, then rename): the invoker must never read half a file.
        No lines, no file: creating an empty one would cost a third of a no-op activation, and
        the invoker reads a missing file of an answered activation as "no logs"."""
        if not lines:
            return
        if not (
            isinstance(activation_id, str)
            and activation_id.isascii()
            and activation_id.replace("-", "").replace("_", "").isalnum()
        ):
            diag(f"no usable activation id {activation_id!r}: {len(lines)} log lines dropped")
            return
        path = os.path.join(self.log_dir, activation_id + ".log")
        temp = os.path.join(self.log_dir, f".{activation_id}.tmp")
        data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
        if len(data) > LOG_FILE_LIMIT:
            ending = (self.logs.truncation_line() + "\n").encode()
            data = data[: data.rfind(b"\n", 0, LOG_FILE_LIMIT - len(ending)) + 1] + ending
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.rename(temp, path)
        except OSError as exc:
            diag(f"cannot write {path}: {exc}")


def lifeline_ended(fd: int) -> bool:
    """Whether the lifeline, found readable, has reached its end. The end is end-of-file,
    nothing else: the pipe may be non-blocking (Node's libuv sets O_NONBLOCK on a pipe it
    watches, and on a description shared with one it is set for all), so an empty read is
    waited out, not taken for the end."""
    try:
        return not os.read(fd, 64)
    except BlockingIOError:
        return False
    except OSError:
        return True


def watch_lifeline() -> None:
    """The sandbox backend hands each sandbox the read end of a pipe only its invoker writes
    to: it reads end-of-file once the invoker is gone, however it went. Then the proxy ends
    everything else in the sandbox and itself, so no sandbox outlives its invoker (not even
    one whose start the invoker's death cut short). Only as pid 1 or 2 (the command
    bubblewrap's init starts) of a pid namespace of its own, where kill(-1) reaches nothing
    outside. A zygote's children are given none: the zygote watches it for them all."""
    given = os.environ.pop("FT_LIFELINE_FD", None)
    if given is None or os.getpid() > 2:
        return
    fd = int(given)

    def wait_for_the_end() -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        while True:
            poller.poll()
            if lifeline_ended(fd):
                break
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass  # nothing else was running
        os._exit(0)

    threading.Thread(target=wait_for_the_end, name="lifeline", daemon=True).start()


def main(listening: Callable[[], None] | None = None) -> None:
    """Serve until the end. ``listening``: called once the socket takes connections."""
    watch_lifeline()
    proxy_dir = os.environ.get("FT_PROXY_DIR", "/ft")
    os.makedirs(os.path.join(proxy_dir, "logs"), exist_ok=True)
    # As PID 1 in a container a signal without a handler is ignored: `docker stop` would wait.
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    proxy = Proxy(proxy_dir, LogCapture())
    routes = {"/init": proxy.init, "/run": proxy.run}
    path = os.path.join(proxy_dir, "proxy.sock")
    temp = f"{path}.{os.getpid()}"
    for stale in (path, temp):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
    server = ProxyServer(temp, routes)
    os.chmod(temp, 0o660)
    # The socket appears under its real name only once it is listening: whoever waits for it
    # never sees a refused connection.
    os.rename(temp, path)
    if listening is not None:
        listening()  # a zygote's child: it says so to the invoker, its stderr stays quiet
    else:
        diag(f"listening on {path}")
    server.serve()


if __name__ == "__main__":
    main()
