"""``Client`` and ``AsyncClient``: the platform's REST API from Python, the same operations
with and without ``await``.

    client = Client()                        # ~/.wskprops or __OW_API_HOST/__OW_API_KEY
    client.actions.invoke("hello", {"name": "you"})

    async with AsyncClient() as client:
        handle = await client.actions.invoke_async("hello")
        print(await handle)
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar, Unpack, overload

import httpx

from funtainer.config import ClientConfig, load_config, normalize_apihost
from funtainer.functions import Function, FunctionOptions
from funtainer.plans import Answer, Async, Bound, Call, M, Plan, Runner, Sync, operation
from funtainer.resources import Actions, Activations, Rules, Triggers
from funtainer.transport import AsyncRunner, EventHooks, SyncRunner, client_options

DEFAULT_TIMEOUT_S = 75.0  # a blocking call may take the server's whole 60 s
H = TypeVar("H", httpx.Client, httpx.AsyncClient)


class _Surface(Bound[M]):
    """What both clients offer, over either runner."""

    def __init__(self, runner: Runner[M], config: ClientConfig) -> None:
        super().__init__(runner)
        self.config = config
        self.actions: Actions[M] = Actions(runner, config.namespace)
        self.triggers: Triggers[M] = Triggers(runner, config.namespace)
        self.rules: Rules[M] = Rules(runner, config.namespace)
        self.activations: Activations[M] = Activations(runner, config.namespace)

    @operation
    def request(self, method: str, path: str, *, query: dict[str, Any] | None = None,
                body: Any = None, wait_s: float = 0.0, auth: bool = True) -> Plan[Answer]:
        """Any call under ``<apihost>/api/v1/`` (``path`` quoted), for what the collections
        do not cover. Raises the typed error of a non-2xx answer."""
        return (yield Call(method, path, query, body, wait_s=wait_s, anonymous=not auth))

    @overload
    def action(self, fn: Callable[..., Any], /) -> Function[M]: ...
    @overload
    def action(
        self, /, *, name: str | None = None, memory: int | None = None,
        timeout: float | None = None, requirements: tuple[str, ...] | list[str] = (),
        kind: str = "python:3",
    ) -> Callable[[Callable[..., Any]], Function[M]]: ...

    def action(
        self, fn: Callable[..., Any] | None = None, /, *, name: str | None = None,
        memory: int | None = None, timeout: float | None = None,
        requirements: tuple[str, ...] | list[str] = (), kind: str = "python:3",
    ) -> Function[M] | Callable[[Callable[..., Any]], Function[M]]:
        """``@client.action`` or ``@client.action(memory=256, timeout=30)``: the function,
        deployed as an action (its own name by default) on its first ``invoke``."""

        def bind(f: Callable[..., Any]) -> Function[M]:
            options = FunctionOptions(name or f.__name__, memory, timeout, tuple(requirements),
                                      kind)
            return Function(self.actions, f, options)

        return bind(fn) if fn is not None else bind


class Options(TypedDict, total=False):
    namespace: str | None  # default: __OW_NAMESPACE, ~/.wskprops, else "_" (the key's own)
    insecure: bool  # skip the TLS certificate check
    timeout: float  # seconds an answer may take, beyond what the server was asked to wait
    event_hooks: EventHooks  # httpx's: callables given each request and response


def _connect(
    http_class: type[H], apihost: str | None, auth: str | None, options: Options
) -> tuple[ClientConfig, H]:
    config = load_config(apihost, auth, options.get("namespace"))
    http = http_class(**client_options(
        config, insecure=options.get("insecure", False),
        timeout_s=options.get("timeout", DEFAULT_TIMEOUT_S),
        event_hooks=options.get("event_hooks")))
    return config, http


class Client(_Surface[Sync]):
    """Operations return their values."""

    def __init__(self, apihost: str | None = None, auth: str | None = None,
                 **options: Unpack[Options]) -> None:
        config, self.http = _connect(httpx.Client, apihost, auth, options)
        super().__init__(SyncRunner(self.http, normalize_apihost(config.apihost)), config)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


class AsyncClient(_Surface[Async]):
    """Operations return coroutines; activation handles are awaitable."""

    def __init__(self, apihost: str | None = None, auth: str | None = None,
                 **options: Unpack[Options]) -> None:
        config, self.http = _connect(httpx.AsyncClient, apihost, auth, options)
        super().__init__(AsyncRunner(self.http, normalize_apihost(config.apihost)), config)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.aclose()
