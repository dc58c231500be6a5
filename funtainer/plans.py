"""Every operation of the client is written once, as a *plan*: a generator that yields the
HTTP calls it needs (and any blocking local work) and receives their answers. ``Client`` runs
plans over ``httpx.Client``, ``AsyncClient`` over ``httpx.AsyncClient``; neither knows what
the operations are, and the operations know nothing of sync or async.

An answer outside 2xx is thrown into the plan as its typed ``ApiError``, so a plan can turn
the errors it expects into what they mean (a 502 carrying a record is a failed activation).

An operation is declared with ``@operation`` on a ``Bound`` class: reached through a sync
client it returns the value, through an asyncio client a coroutine. The overloads let type
checkers see which.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

import httpx

T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True)
class Call:
    """One request under ``<apihost>/api/<version>/``."""

    method: str
    path: str  # already quoted
    query: Mapping[str, Any] | None = None
    body: Any = None
    headers: Mapping[str, str] | None = None
    wait_s: float = 0.0  # the server may hold the answer this long before its first byte
    anonymous: bool = False  # without the key (the API's build information)


@dataclass(frozen=True)
class Offload:
    """Local work that blocks (reading files, running pip): inline in a sync client, in a
    worker thread in an asyncio one."""

    work: Callable[[], Any]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: httpx.Headers
    body: Any  # parsed JSON, the text if not JSON, None if empty

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


Step = Call | Offload
Plan = Generator[Step, Any, T]


class Sync:
    """Marks a client whose operations return their values."""


class Async:
    """Marks a client whose operations return coroutines."""


M = TypeVar("M", Sync, Async)


class Runner(Protocol[M]):
    def run(self, plan: Plan[T]) -> Any: ...


class Bound(Generic[M]):
    """Something whose operations run through a client's runner."""

    def __init__(self, runner: Runner[M]) -> None:
        self._runner = runner


class operation(Generic[P, T]):
    def __init__(self, plan: Callable[Concatenate[Any, P], Plan[T]]) -> None:
        self._plan = plan
        functools.update_wrapper(self, plan)

    @overload
    def __get__(self, owner: None, cls: type) -> operation[P, T]: ...
    @overload
    def __get__(self, owner: Bound[Sync], cls: type) -> Callable[P, T]: ...
    @overload
    def __get__(self, owner: Bound[Async], cls: type) -> Callable[P, Awaitable[T]]: ...

    def __get__(self, owner: Bound[Any] | None, cls: type) -> Any:
        if owner is None:
            return self
        plan, runner = self._plan, owner._runner

        @functools.wraps(plan)
        def run(*args: P.args, **kwargs: P.kwargs) -> Any:
            return runner.run(plan(owner, *args, **kwargs))

        return run
