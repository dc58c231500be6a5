"""A small HTTP client for the OpenWhisk REST API (``<apihost>/api/<version>/...``) over urllib."""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from cli.wskprops import ClientConfig

# A blocking invoke may legitimately wait the server's full 60 s; leave room above that.
DEFAULT_TIMEOUT_S = 75.0
VERBOSE_BODY_LIMIT = 1000  # wsk truncates traced bodies at this many characters
USER_AGENT = "funtainer-ft/0.1"


class ClientError(Exception):
    """The API answered with a non-2xx status. ``message``/``code`` come from OpenWhisk's error
    body ``{"error": ..., "code": <transaction id>}``; ``body`` is the whole parsed answer
    because failed blocking invokes carry an activation record instead."""

    def __init__(
        self, status: int, message: str, code: str | None = None, body: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.body = body

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})" if self.code else self.message


class ApiUnreachable(Exception):
    """No HTTP answer at all: refused, unknown host, TLS failure or timeout."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: Any  # parsed JSON, or None for an empty body

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


def normalize_apihost(apihost: str) -> str:
    """wsk's rule: a host without a scheme means https."""
    apihost = apihost.strip().rstrip("/")
    if "://" not in apihost:
        apihost = "https://" + apihost
    return apihost


def _is_loopback(hostname: str | None) -> bool:
    if not hostname:
        return False
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def encode_query(query: dict[str, Any] | None) -> str:
    if not query:
        return ""
    pairs = [(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in query.items()]
    return "?" + urllib.parse.urlencode(pairs)


@dataclass
class WhiskClient:
    config: ClientConfig
    insecure: bool = False
    verbose: bool = False
    timeout: float = DEFAULT_TIMEOUT_S
    _opener: urllib.request.OpenerDirector | None = field(default=None, init=False, repr=False)

    @property
    def apihost(self) -> str:
        return normalize_apihost(self.config.apihost)

    @property
    def base_url(self) -> str:
        return f"{self.apihost}/api/{self.config.apiversion}/"

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: Any = None,
        auth: bool = True,
    ) -> Response:
        """Send one request; return 2xx answers, raise ``ClientError`` for the others."""
        # The API root itself ("GET /api/v1", build info) has no trailing slash.
        url = self.base_url + path.lstrip("/") if path else self.base_url.rstrip("/")
        url += encode_query(query)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        if auth and self.config.auth:
            token = base64.b64encode(self.config.auth.encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        if self.verbose:
            self._trace_request(method, url, headers, data)

        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self._get_opener().open(request, timeout=self.timeout) as answer:
                status, answer_headers, raw = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as err:
            status, answer_headers, raw = err.code, err.headers, err.read()
        except urllib.error.URLError as err:
            raise ApiUnreachable(self._unreachable_message(err.reason)) from err
        except (TimeoutError, ConnectionError) as err:
            raise ApiUnreachable(self._unreachable_message(err)) from err

        if self.verbose:
            self._trace_response(status, answer_headers, raw)
        response = Response(status, dict(answer_headers.items()), _parse_body(raw))
        if not 200 <= status < 300:
            raise _client_error(status, response.body, raw)
        return response

    def _get_opener(self) -> urllib.request.OpenerDirector:
        if self._opener is None:
            handlers: list[urllib.request.BaseHandler] = []
            if self.insecure:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                handlers.append(urllib.request.HTTPSHandler(context=context))
            # Environment proxies must not capture a local cluster (Go's client skips them for
            # loopback too; urllib would not).
            if _is_loopback(urllib.parse.urlsplit(self.apihost).hostname):
                handlers.append(urllib.request.ProxyHandler({}))
            self._opener = urllib.request.build_opener(*handlers)
        return self._opener

    def _unreachable_message(self, reason: object) -> str:
        if isinstance(reason, ConnectionRefusedError):
            return (
                f"cannot reach the API host {self.apihost}: connection refused. "
                "Is it running? (ft up)"
            )
        if isinstance(reason, TimeoutError):
            return f"cannot reach the API host {self.apihost}: timed out after {self.timeout:g} s"
        text = getattr(reason, "strerror", None) or str(reason)
        if isinstance(reason, ssl.SSLCertVerificationError):
            text += " (--insecure skips the certificate check)"
        return f"cannot reach the API host {self.apihost}: {text}"

    def _trace_request(
        self, method: str, url: str, headers: dict[str, str], data: bytes | None
    ) -> None:
        shown = dict(headers)
        if "Authorization" in shown:
            shown["Authorization"] = "Basic ***"  # never echo the key into terminals or CI logs
        out = sys.stdout
        print("REQUEST:", file=out)
        print(f"[{method}]\t{url}", file=out)
        print("Req Headers", file=out)
        print(json.dumps(shown, indent=4), file=out)
        if data is not None:
            print("Req Body", file=out)
            print(_truncate(data.decode(errors="replace")), file=out)

    def _trace_response(self, status: int, headers: Message, raw: bytes) -> None:
        out = sys.stdout
        print("RESPONSE:Got response with code", status, file=out)
        print("Resp Headers", file=out)
        print(json.dumps(dict(headers.items()), indent=4), file=out)
        print(f"Response body size is {len(raw)} bytes", file=out)
        print("Response body received:", file=out)
        print(_truncate(raw.decode(errors="replace")), file=out)


def _truncate(text: str) -> str:
    return text if len(text) <= VERBOSE_BODY_LIMIT else text[:VERBOSE_BODY_LIMIT] + "..."


def _parse_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def _client_error(status: int, body: Any, raw: bytes) -> ClientError:
    if isinstance(body, dict) and "error" in body:
        error = body["error"]
        message = error if isinstance(error, str) else json.dumps(error)
        code = body.get("code")
        return ClientError(status, message, None if code is None else str(code), body)
    text = raw.decode(errors="replace").strip()
    detail = f": {text[:200]}" if text and not isinstance(body, (dict, list)) else ""
    return ClientError(status, f"the API answered HTTP {status}{detail}", None, body)
