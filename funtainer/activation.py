"""The handle of a started activation, as ``invoke_async`` returns it (Celery's
``AsyncResult``).

Waiting holds one request open at a time: ``GET .../activations/{id}?wait=<ms>``, which the
gateway answers the moment the record is written (or after its longest wait, when the handle
asks again). Nothing polls.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any
from urllib.parse import quote

from funtainer.errors import ActivationFailed, ActivationTimeout, NotFound
from funtainer.plans import Async, Bound, Call, M, Plan, Runner, operation

SERVER_WAIT_S = 60.0  # the gateway's longest wait, as for blocking invokes


class Activation(Bound[M]):
    def __init__(
        self, runner: Runner[M], namespace: str, activation_id: str,
        record: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(runner)
        self.id = activation_id
        self.namespace = namespace
        self._record = record

    def __repr__(self) -> str:
        state = "finished" if self._record is not None else "running or unknown"
        return f"<Activation {self.id} ({state})>"

    @property
    def done(self) -> bool:
        """Whether the record was seen (by an earlier wait); never asks the server."""
        return self._record is not None

    @operation
    def wait(self, timeout: float | None = None) -> Plan[dict[str, Any]]:
        """The activation record once written, waiting up to ``timeout`` seconds (None: as
        long as it takes). Raises ``ActivationTimeout`` past it."""
        return (yield from self._wait(timeout))

    @operation
    def result(self, timeout: float | None = None) -> Plan[Any]:
        """What the action returned; ``ActivationFailed`` if it did not succeed."""
        return result_of((yield from self._wait(timeout)))

    @operation
    def logs(self, timeout: float | None = None) -> Plan[list[str]]:
        """The activation's log lines (once it finished)."""
        return list((yield from self._wait(timeout)).get("logs") or [])

    def __await__(self: Activation[Async]) -> Generator[Any, None, Any]:
        """``await handle`` is ``await handle.result()``."""
        return self.result().__await__()

    def _wait(self, timeout: float | None) -> Plan[dict[str, Any]]:
        if self._record is not None:
            return self._record
        path = f"namespaces/{quote(self.namespace, safe='')}/activations/{self.id}"
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = SERVER_WAIT_S if deadline is None else deadline - time.monotonic()
            wait_s = max(0.0, min(left, SERVER_WAIT_S))
            try:
                answer = yield Call("GET", path, {"wait": int(wait_s * 1000)}, wait_s=wait_s)
            except NotFound:  # not written yet (or no such id: OpenWhisk tells them apart nowhere)
                if deadline is not None and time.monotonic() >= deadline:
                    raise ActivationTimeout(self.id, timeout or 0.0) from None
                continue
            self._record = answer.body
            return answer.body


def result_of(record: dict[str, Any]) -> Any:
    response = record.get("response") or {}
    if not response.get("success"):
        raise ActivationFailed(record)
    return response.get("result")
