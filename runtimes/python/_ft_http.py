"""HTTP/1.1 over a Unix socket for the action proxy: keep-alive, Content-Length always, any
number of connections served one request at a time in the main thread.

Only the invoker talks to this socket, with small POSTs of JSON; the parser reads exactly
what that needs (request line, headers, a Content-Length or chunked body). http.server's
handler parses headers with the email package, which cost a third of a no-op activation.

Part of the proxy (see proxy.py); standard library only.
"""

from __future__ import annotations

import json
import selectors
import socket
from collections.abc import Callable

from _ft_logs import diag

# A route takes the request's JSON object and returns (status, JSON body).
Route = Callable[[dict[str, object]], tuple[int, bytes]]

MAX_LINE = 65536
MAX_HEADERS = 100

REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    502: "Bad Gateway",
}


def error(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": message}).encode()


class BadRequest(Exception):
    """The request cannot be read; after answering it the connection is closed, since where
    the next request would start is unknown."""


class Connection:
    """One keep-alive connection. The server loop calls ``serve_ready`` whenever it is
    readable, so an idle connection never keeps another one waiting."""

    def __init__(self, sock: socket.socket, routes: dict[str, Route]) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.routes = routes

    def serve_ready(self) -> bool:
        """Serve the request(s) the peer sent; False once the connection is to be closed."""
        while True:
            if not self._serve_one():
                return False
            if not self._buffered():
                return True

    def close(self) -> None:
        try:
            self.rfile.close()
        except OSError:
            pass
        self.sock.close()

    def _serve_one(self) -> bool:
        line = self.rfile.readline(MAX_LINE + 1)
        if not line:
            return False  # the peer closed the connection
        try:
            method, path, keep_alive = self._request_line(line)
            headers = self._headers()
            if headers.get("connection", "").lower() == "close":
                keep_alive = False
            body = self._body(headers)
        except BadRequest as exc:
            self._send(*error(400, str(exc)), keep_alive=False)
            return False
        self._send(*self._dispatch(method, path, body), keep_alive=keep_alive)
        return keep_alive

    def _dispatch(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        route = self.routes.get(path)
        if route is None:
            return error(404, f"Unknown path {path}")
        if method != "POST":
            return error(405, f"{method} {path} is not supported")
        try:
            message = json.loads(body)
        except ValueError as exc:
            return error(400, f"The request body is not valid JSON: {exc}")
        if not isinstance(message, dict):
            return error(400, "The request body is not a JSON object.")
        return route(message)

    def _request_line(self, line: bytes) -> tuple[str, str, bool]:
        """Method, path, and whether the connection stays open by default."""
        parts = line.rstrip(b"\r\n").split(b" ")
        if len(line) > MAX_LINE or len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise BadRequest("Malformed request line.")
        method, path, version = (part.decode("latin-1") for part in parts)
        return method, path, version != "HTTP/1.0"

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self.rfile.readline(MAX_LINE + 1)
            if line in (b"\r\n", b"\n"):
                return headers
            name, colon, value = line.partition(b":")
            if not colon or len(line) > MAX_LINE:
                raise BadRequest("Malformed request headers.")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        raise BadRequest("Too many request headers.")

    def _body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._chunked()
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            raise BadRequest("Malformed request body framing.")
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            raise BadRequest("The request body ended early.")
        return body

    def _chunked(self) -> bytes:
        parts = []
        while True:
            try:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            except ValueError:
                raise BadRequest("Malformed request body framing.") from None
            if size == 0:
                while self.rfile.readline(MAX_LINE + 1) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(3)

    def _buffered(self) -> bool:
        # A pipelined request already in rfile's buffer would never wake the selector.
        self.sock.setblocking(False)
        try:
            return bool(self.rfile.peek(1))
        except OSError:
            return False
        finally:
            self.sock.setblocking(True)

    def _send(self, status: int, body: bytes, *, keep_alive: bool) -> None:
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        )
        if not keep_alive:
            head += "Connection: close\r\n"
        # One write: headers and body leave in a single send.
        self.sock.sendall(head.encode() + b"\r\n" + body)


class ProxyServer:
    """Serves any number of connections, one request at a time, all in the main thread:
    the action runs where Python code expects to run (signals work, for one)."""

    def __init__(self, path: str, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket.bind(path)
        self.socket.listen(16)

    def serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ, None)
        while True:
            for key, _ in selector.select():
                connection: Connection | None = key.data
                if connection is None:
                    try:
                        sock, _ = self.socket.accept()
                    except OSError:
                        continue
                    connection = Connection(sock, self.routes)
                    selector.register(sock, selectors.EVENT_READ, connection)
                    continue
                try:
                    keep = connection.serve_ready()
                except OSError:  # the peer went away mid-exchange
                    keep = False
                except Exception:
                    import traceback

                    diag("internal error:\n" + traceback.format_exc())
                    keep = False
                if not keep:
                    selector.unregister(connection.sock)
                    connection.close()
