"""HTTP/1.1 over a Unix socket for the action proxy: keep-alive, Content-Length always, any
number of connections served one request at a time in the main thread.

Part of the proxy (see proxy.py); standard library only.
"""

from __future__ import annotations

import json
import selectors
import socket
import socketserver
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

from _ft_logs import diag

# A route takes the request's JSON object and returns (status, JSON body).
Route = Callable[[dict[str, object]], tuple[int, bytes]]

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


class Handler(BaseHTTPRequestHandler):
    """One keep-alive connection. Unlike socketserver's handlers it does not serve its
    connection to the end when created: the server loop calls ``serve_ready`` whenever the
    connection is readable, so an idle connection never keeps another one waiting."""

    protocol_version = "HTTP/1.1"
    server: ProxyServer

    def __init__(self, request: socket.socket, server: ProxyServer) -> None:
        # Not BaseRequestHandler.__init__: it would serve the whole connection right away.
        self.request = request
        self.client_address = ""
        self.server = server
        self.setup()

    def log_message(self, format: str, *args: object) -> None:
        pass  # nothing per request: this is the warm path, and stderr is the action's log

    def address_string(self) -> str:
        return "unix"  # a Unix socket peer has no address (and no DNS lookups, ever)

    def serve_ready(self) -> bool:
        """Serve the request(s) the peer sent; False once the connection is to be closed."""
        while True:
            self.close_connection = True
            self.handle_one_request()
            if self.close_connection:
                return False
            if not self._buffered():
                return True

    def _buffered(self) -> bool:
        # A pipelined request already in rfile's buffer would never wake the selector.
        self.connection.setblocking(False)
        try:
            return bool(self.rfile.peek(1))
        except OSError:
            return False
        finally:
            self.connection.setblocking(True)

    def close(self) -> None:
        try:
            self.finish()
        except OSError:
            pass
        self.connection.close()

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        route = self.server.routes.get(self.path)
        if route is None:
            self._send(*error(404, f"Unknown path {self.path}"))
            return
        try:
            message = json.loads(body)
        except ValueError as exc:
            self._send(*error(400, f"The request body is not valid JSON: {exc}"))
            return
        if not isinstance(message, dict):
            self._send(*error(400, "The request body is not a JSON object."))
            return
        self._send(*route(message))

    def do_GET(self) -> None:
        if self._read_body() is not None:
            status = 405 if self.path in self.server.routes else 404
            self._send(*error(status, f"{self.command} {self.path} is not supported"))

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 400 for a malformed one."""
        try:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                return self._read_chunked()
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.close_connection = True  # we cannot tell where the next request starts
            self._send(*error(400, "Malformed request body framing."))
            return None
        return self.rfile.read(length) if length else b""

    def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"x", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(3)

    def _send(self, status: int, body: bytes) -> None:
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        )
        if self.close_connection:
            head += "Connection: close\r\n"
        # One write: headers and body leave in a single send.
        self.wfile.write(head.encode() + b"\r\n" + body)


class ProxyServer(socketserver.UnixStreamServer):
    """Serves any number of connections, one request at a time, all in the main thread:
    the action runs where Python code expects to run (signals work, for one)."""

    request_queue_size = 16

    def __init__(self, path: str, routes: dict[str, Route]) -> None:
        self.routes = routes
        super().__init__(path, Handler)  # type: ignore[arg-type]

    def serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ, None)
        while True:
            for key, _ in selector.select():
                handler: Handler | None = key.data
                if handler is None:
                    try:
                        connection, _ = self.socket.accept()
                    except OSError:
                        continue
                    selector.register(connection, selectors.EVENT_READ, Handler(connection, self))
                    continue
                try:
                    keep = handler.serve_ready()
                except OSError:  # the peer went away mid-exchange
                    keep = False
                except Exception:
                    import traceback

                    diag("internal error:\n" + traceback.format_exc())
                    keep = False
                if not keep:
                    selector.unregister(handler.connection)
                    handler.close()
