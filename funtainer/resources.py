"""The API's collections as the client offers them: ``client.actions``, ``.triggers``,
``.rules``, ``.activations``. Names are wsk's (``name``, ``pkg/name``, ``/ns/pkg/name``)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from funtainer.activation import SERVER_WAIT_S, Activation, result_of
from funtainer.errors import ApiError
from funtainer.functions import Function, FunctionOptions, package_function
from funtainer.names import QualifiedName, parse_qualified_name
from funtainer.plans import Bound, Call, M, Offload, Plan, Runner, operation

Params = Mapping[str, Any]
LIST_LIMIT = 30  # OpenWhisk's default page


def key_values(values: Params | None) -> list[dict[str, Any]]:
    return [{"key": key, "value": value} for key, value in (values or {}).items()]


class Collection(Bound[M]):
    """What every entity collection answers: get, list, delete."""

    collection = ""

    def __init__(self, runner: Runner[M], namespace: str) -> None:
        super().__init__(runner)
        self.namespace = namespace

    def _name(self, name: str) -> QualifiedName:
        return parse_qualified_name(name, self.namespace)

    def _path(self, name: str) -> str:
        qualified = self._name(name)
        return f"namespaces/{qualified.namespace_path}/{self.collection}/{qualified.entity_path}"

    @operation
    def get(self, name: str) -> Plan[dict[str, Any]]:
        return (yield Call("GET", self._path(name))).body

    @operation
    def list(self, *, limit: int = LIST_LIMIT, skip: int = 0) -> Plan[list[dict[str, Any]]]:
        path = f"namespaces/{quote(self.namespace, safe='')}/{self.collection}"
        return (yield Call("GET", path, {"limit": limit, "skip": skip})).body or []

    @operation
    def delete(self, name: str) -> Plan[dict[str, Any]]:
        return (yield Call("DELETE", self._path(name))).body


class Actions(Collection[M]):
    collection = "actions"

    def _put(
        self, name: str, code: str | bytes, *, kind: str = "python:3", main: str | None = None,
        memory: int | None = None, timeout: float | None = None, params: Params | None = None,
        annotations: Params | None = None, web: bool = False, overwrite: bool = True,
    ) -> Plan[dict[str, Any]]:
        """Create (or with ``overwrite`` replace) an action. ``code`` is source text, or a
        zip's bytes; ``timeout`` in seconds, ``memory`` in MB."""
        exec_: dict[str, Any] = {"kind": kind}
        if isinstance(code, bytes):
            exec_.update(code=base64.b64encode(code).decode(), binary=True)
        else:
            exec_["code"] = code
        if main:
            exec_["main"] = main
        limits: dict[str, int] = {}
        if memory is not None:
            limits["memory"] = memory
        if timeout is not None:
            limits["timeout"] = int(timeout * 1000)
        marks = {**(annotations or {}), **({"web-export": True} if web else {})}
        body = {"exec": exec_, "limits": limits, "parameters": key_values(params),
                "annotations": key_values(marks)}
        call = Call("PUT", self._path(name), {"overwrite": overwrite}, body)
        return (yield call).body

    # The operation, and the plan ``deploy`` runs inside its own.
    create = operation(_put)

    @operation
    def invoke(self, name: str, params: Params | None = None, *,
               timeout: float | None = None) -> Plan[Any]:
        """Run the action and return its result (``ActivationFailed`` if it failed), waiting
        up to ``timeout`` seconds (None: as long as it takes)."""
        return result_of((yield from self._run(name, params, timeout)))

    @operation
    def invoke_async(self, name: str, params: Params | None = None) -> Plan[Activation[M]]:
        """Start the action; the handle waits for its result."""
        return (yield from self._start(name, params))

    def _start(self, name: str, params: Params | None) -> Plan[Activation[M]]:
        answer = yield Call("POST", self._path(name), {"blocking": False}, dict(params or {}))
        return Activation(self._runner, self.namespace, answer.body["activationId"])

    @operation
    def deploy(
        self, fn: Callable[..., Any], name: str | None = None, *, memory: int | None = None,
        timeout: float | None = None, requirements: tuple[str, ...] | list[str] = (),
        kind: str = "python:3",
    ) -> Plan[Function[M]]:
        """Ship a Python function as an action (its own name by default) and return it bound
        to this client: ``.invoke(**params)``, ``.invoke_async(**params)``."""
        options = FunctionOptions(name or fn.__name__, memory, timeout, tuple(requirements), kind)
        function = Function(self, fn, options)
        yield from self._deploy(function)
        return function

    def _deploy(self, function: Function[M]) -> Plan[None]:
        """``function``'s code (its requirements installed beside it) as its action."""
        options = function.options
        code = yield Offload(lambda: package_function(function.fn, options.requirements))
        yield from self._put(options.name, code, kind=options.kind, main=function.fn.__name__,
                             memory=options.memory, timeout=options.timeout)
        function.deployed = True

    def _run(self, name: str, params: Params | None, timeout: float | None,
             ) -> Plan[dict[str, Any]]:
        """A blocking invoke's record; past the gateway's own wait, the handle's wait."""
        began = time.monotonic()
        wait_s = SERVER_WAIT_S if timeout is None else min(timeout, SERVER_WAIT_S)
        query: dict[str, Any] = {"blocking": True}
        if timeout is not None:
            query["timeout"] = max(1, int(wait_s * 1000))
        try:
            answer = yield Call("POST", self._path(name), query, dict(params or {}), wait_s=wait_s)
        except ApiError as err:
            if _is_record(err.body):  # it ran and failed: 502 (or 500) with its record
                return err.body
            raise
        if answer.status != 202:
            return answer.body
        left = None if timeout is None else max(0.0, timeout - (time.monotonic() - began))
        handle = Activation(self._runner, self.namespace, answer.body["activationId"])
        return (yield from handle._wait(left))


def _is_record(body: Any) -> bool:
    return isinstance(body, dict) and "activationId" in body and "response" in body


class Triggers(Collection[M]):
    collection = "triggers"

    @operation
    def create(self, name: str, *, params: Params | None = None,
               annotations: Params | None = None, overwrite: bool = True,
               ) -> Plan[dict[str, Any]]:
        body = {"parameters": key_values(params), "annotations": key_values(annotations)}
        return (yield Call("PUT", self._path(name), {"overwrite": overwrite}, body)).body

    @operation
    def fire(self, name: str, params: Params | None = None) -> Plan[str | None]:
        """Fire the trigger; the id of its activation, None if no rule is active."""
        answer = yield Call("POST", self._path(name), None, dict(params or {}))
        return answer.body.get("activationId") if isinstance(answer.body, dict) else None


class Rules(Collection[M]):
    collection = "rules"

    @operation
    def create(self, name: str, trigger: str, action: str, *, overwrite: bool = True,
               ) -> Plan[dict[str, Any]]:
        """A rule running ``action`` on every fire of ``trigger``; active at once."""
        body = {"trigger": _fqn(self._name(trigger)), "action": _fqn(self._name(action))}
        return (yield Call("PUT", self._path(name), {"overwrite": overwrite}, body)).body

    @operation
    def enable(self, name: str) -> Plan[None]:
        yield Call("POST", self._path(name), None, {"status": "active"})

    @operation
    def disable(self, name: str) -> Plan[None]:
        yield Call("POST", self._path(name), None, {"status": "inactive"})


def _fqn(name: QualifiedName) -> str:
    return f"/{name.namespace}/{name.entity}"


class Activations(Bound[M]):
    def __init__(self, runner: Runner[M], namespace: str) -> None:
        super().__init__(runner)
        self.namespace = namespace

    def _path(self, suffix: str = "") -> str:
        return f"namespaces/{quote(self.namespace, safe='')}/activations{suffix}"

    def handle(self, activation_id: str) -> Activation[M]:
        """A handle on an activation started elsewhere (no request is made)."""
        return Activation(self._runner, self.namespace, activation_id)

    @operation
    def get(self, activation_id: str) -> Plan[dict[str, Any]]:
        """The record; ``NotFound`` while the activation runs."""
        return (yield Call("GET", self._path(f"/{quote(activation_id, safe='')}"))).body

    @operation
    def list(
        self, name: str | None = None, *, limit: int = LIST_LIMIT, skip: int = 0,
        since: int | None = None, upto: int | None = None, docs: bool = False,
    ) -> Plan[list[dict[str, Any]]]:
        """Newest first; ``name`` an action (``pkg/action``), ``since``/``upto`` epoch ms,
        ``docs`` whole records instead of summaries."""
        query = {"name": name, "limit": limit, "skip": skip, "since": since, "upto": upto,
                 "docs": docs or None}
        return (yield Call("GET", self._path(), query)).body or []
