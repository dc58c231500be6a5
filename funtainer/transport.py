"""The two runners of plans: over ``httpx.Client`` and over ``httpx.AsyncClient``. Everything
but the send itself (the request, reading the answer, naming a failure) is shared."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import ssl
from collections.abc import Callable, Mapping
from typing import Any, Generic

import httpx

from funtainer.config import ClientConfig, normalize_apihost
from funtainer.errors import FuntainerError, Unreachable, api_error
from funtainer.plans import Answer, Call, Offload, Plan, Step, T

# A blocking call may legitimately take the server's whole wait; leave room above that.
CONNECT_TIMEOUT_S = 10.0
READ_MARGIN_S = 15.0
USER_AGENT = "funtainer-python/0.1"

EventHooks = Mapping[str, list[Callable[..., Any]]]


def _is_loopback(hostname: str | None) -> bool:
    if hostname == "localhost":
        return True
    try:
        return bool(hostname) and ipaddress.ip_address(hostname or "").is_loopback
    except ValueError:
        return False


def client_options(
    config: ClientConfig, *, insecure: bool, timeout_s: float, event_hooks: EventHooks | None
) -> dict[str, Any]:
    """What both httpx clients are built with."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    apihost = normalize_apihost(config.apihost)
    return {
        "base_url": config.base_url,
        "headers": headers,
        "auth": _basic_auth(config.auth),
        "verify": not insecure,
        "timeout": httpx.Timeout(timeout_s, connect=CONNECT_TIMEOUT_S),
        # Environment proxies must not capture a local cluster (Go's wsk skips them for
        # loopback too).
        "trust_env": not _is_loopback(httpx.URL(apihost).host),
        "event_hooks": dict(event_hooks or {}),
    }


def _basic_auth(auth: str | None) -> httpx.BasicAuth | None:
    if not auth:
        return None
    user, _, password = auth.partition(":")
    return httpx.BasicAuth(user, password)


def _request_args(call: Call, timeout: httpx.Timeout) -> dict[str, Any]:
    args: dict[str, Any] = {"params": _query(call.query), "headers": dict(call.headers or {})}
    if call.body is not None:
        args["content"] = json.dumps(call.body, ensure_ascii=False).encode()
        args["headers"]["Content-Type"] = "application/json"
    if call.anonymous:
        args["auth"] = None
    if call.wait_s:
        read = (timeout.read or 0) + call.wait_s
        args["timeout"] = httpx.Timeout(read, connect=CONNECT_TIMEOUT_S)
    return args


def _url(base_url: httpx.URL, call: Call) -> str:
    # The API root itself ("GET /api/v1", build information) has no trailing slash.
    return call.path or str(base_url).rstrip("/")


def _query(query: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    return [(k, str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in (query or {}).items() if v is not None]


def read_answer(response: httpx.Response) -> Answer:
    """The answer, or its typed error if not 2xx."""
    raw = response.content
    body: Any = None
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode(errors="replace")
    if not 200 <= response.status_code < 300:
        raise api_error(response.status_code, body, raw.decode(errors="replace"))
    return Answer(response.status_code, response.headers, body)


def _causes(err: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and cause not in found:
        found.append(cause)
        cause = cause.__cause__ or cause.__context__
    return found


def unreachable(apihost: str, err: Exception) -> Unreachable:
    """What failed, in words: the last cause is the operating system's."""
    causes = _causes(err)
    where = f"cannot reach the API host {apihost}"
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return Unreachable(f"{where}: connection refused. Is it running? (ft up)")
    if isinstance(err, httpx.TimeoutException):
        return Unreachable(f"{where}: timed out")
    text = str(causes[-1]) or type(causes[-1]).__name__
    if any(isinstance(c, ssl.SSLCertVerificationError) for c in causes):
        text += " (--insecure skips the certificate check)"
    return Unreachable(f"{where}: {text}")


class _Driving(Generic[T]):
    """A plan being run: its next step, given how the previous one went."""

    def __init__(self, plan: Plan[T]) -> None:
        self._plan = plan
        self._reply: Any = None
        self._error: FuntainerError | None = None
        self.value: T | None = None

    def next_step(self) -> Step | None:
        """None once the plan returned (its value is then ``value``)."""
        try:
            return self._plan.throw(self._error) if self._error else self._plan.send(self._reply)
        except StopIteration as done:
            self.value = done.value
            return None

    def answered(self, reply: Any) -> None:
        self._reply, self._error = reply, None

    def failed(self, error: FuntainerError) -> None:
        self._reply, self._error = None, error


class SyncRunner:
    def __init__(self, http: httpx.Client, apihost: str) -> None:
        self.http = http
        self.apihost = apihost

    def _step(self, step: Step) -> Any:
        if isinstance(step, Offload):
            return step.work()
        try:
            response = self.http.request(step.method, _url(self.http.base_url, step),
                                         **_request_args(step, self.http.timeout))
        except httpx.TransportError as err:
            raise unreachable(self.apihost, err) from err
        return read_answer(response)

    def run(self, plan: Plan[T]) -> T:
        driving = _Driving(plan)
        while (step := driving.next_step()) is not None:
            try:
                driving.answered(self._step(step))
            except FuntainerError as err:
                driving.failed(err)
        return driving.value  # type: ignore[return-value]


class AsyncRunner:
    def __init__(self, http: httpx.AsyncClient, apihost: str) -> None:
        self.http = http
        self.apihost = apihost

    async def _step(self, step: Step) -> Any:
        if isinstance(step, Offload):
            return await asyncio.to_thread(step.work)
        try:
            response = await self.http.request(step.method, _url(self.http.base_url, step),
                                               **_request_args(step, self.http.timeout))
        except httpx.TransportError as err:
            raise unreachable(self.apihost, err) from err
        return read_answer(response)

    async def run(self, plan: Plan[T]) -> T:
        driving = _Driving(plan)
        while (step := driving.next_step()) is not None:
            try:
                driving.answered(await self._step(step))
            except FuntainerError as err:
                driving.failed(err)
        return driving.value  # type: ignore[return-value]
