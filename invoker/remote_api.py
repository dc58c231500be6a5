"""Another platform's REST API, as the remote pool (invoker/remote_pool.py) uses it: another
Funtainer, or any OpenWhisk-compatible API host, reached with a key of its own.

An action is deployed there under a name of its own (its namespace and name, made flat, with
a short hash against collisions) the first time it is needed and again whenever its version
or code changes; invoking waits for the answer (the blocking call, then the activation's record
if the call's wait ran out)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from typing import Any

import aiohttp

from bus.models import ActionSnapshot, StatusCode

ACTIONS = "/api/v1/namespaces/_/actions"
ACTIVATIONS = "/api/v1/namespaces/_/activations"
# OpenWhisk answers a blocking call within 60 s at most; past that the record is fetched.
MAX_BLOCKING_WAIT_MS = 60_000
RECORD_POLL_S = 0.5
# The answer may take the action's whole time limit, plus the remote's own queueing.
ANSWER_SLACK_S = 60.0
DEPLOY_ATTEMPTS = 3
STATUS_BY_NAME = {code.message: code for code in StatusCode}


class RemoteFailure(Exception):
    """The remote platform did not answer, or answered with an error of its own (not the
    action's): the activation is answered here with an explicit error."""


class NotDeployed(RemoteFailure):
    pass


def remote_name(action: ActionSnapshot) -> str:
    """A flat action name on the remote for ``ns/[package/]name``."""
    flat = re.sub(r"[^A-Za-z0-9_.-]", "_", action.path)
    digest = hashlib.blake2b(action.path.encode(), digest_size=4).hexdigest()
    return f"burst-{flat}-{digest}"


class RemoteApi:
    def __init__(self, api_host: str, auth: str) -> None:
        uuid, _, key = auth.partition(":")
        self.api_host = api_host.rstrip("/")
        self.http = aiohttp.ClientSession(
            base_url=self.api_host,
            headers={"Authorization": aiohttp.encode_basic_auth(uuid, key)},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        self._deployed: dict[str, str] = {}  # remote name -> the action key deployed there
        # One deploy of a name at a time: the calls that arrive meanwhile use its result.
        self._deploying: dict[str, asyncio.Lock] = {}

    async def close(self) -> None:
        await self.http.close()

    async def answers(self) -> bool:
        """Whether the remote's API answers at all (it is asked on every heartbeat)."""
        try:
            async with self.http.get("/api/v1", timeout=aiohttp.ClientTimeout(total=2)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def deploy(self, action: ActionSnapshot, code: str | None) -> str:
        """The remote name of ``action``, deployed there unless this very version already is."""
        name = remote_name(action)
        if self._deployed.get(name) == action.key:
            return name
        async with self._deploying.setdefault(name, asyncio.Lock()):
            if self._deployed.get(name) != action.key:
                await self._put(name, action, code)
                self._deployed[name] = action.key
        return name

    async def _put(self, name: str, action: ActionSnapshot, code: str | None) -> None:
        exec_: dict[str, Any] = {"kind": action.kind, "main": action.main,
                                 "binary": action.binary}
        if code is not None:
            exec_["code"] = code
        if action.image:
            exec_["image"] = action.image
        body = {
            "exec": exec_,
            "limits": action.limits.model_dump(),
            "parameters": [{"key": k, "value": v, "init": True}
                           for k, v in action.init_env.items()],
            "annotations": [{"key": "burstOf", "value": action.path}],
        }
        for _ in range(DEPLOY_ATTEMPTS):
            async with self.http.put(f"{ACTIONS}/{name}?overwrite=true", json=body) as resp:
                if resp.status == 200:
                    return
                # 409: another pool deployed it at the same moment; ours goes on top.
                if resp.status != 409:
                    raise RemoteFailure(f"deploying {name}: HTTP {resp.status} "
                                        f"{await resp.text()}")
        raise RemoteFailure(f"deploying {name}: concurrent modifications {DEPLOY_ATTEMPTS} "
                            "times over")

    async def invoke(self, name: str, payload: Any, *, activation_id: str,
                     timeout_ms: int) -> dict[str, Any]:
        """The remote's activation record (JSON) once it ran. The local activation id is the
        call's ``Idempotency-Key``: asked again for the same activation (after a crash here),
        a Funtainer remote answers with the run it already made."""
        wait_ms = min(timeout_ms + 5_000, MAX_BLOCKING_WAIT_MS)
        async with self.http.post(
            f"{ACTIONS}/{name}?blocking=true&timeout={wait_ms}", json=payload,
            headers={"Idempotency-Key": activation_id},
        ) as resp:
            body = await resp.json(content_type=None) if resp.content_length != 0 else None
            status = resp.status
        if isinstance(body, dict) and isinstance(body.get("response"), dict):
            return body  # 200, or 502 with the action's error: a record either way
        if status == 404:
            self._deployed.pop(name, None)
            raise NotDeployed(f"{name} is not deployed on {self.api_host}")
        if status == 202 and isinstance(body, dict) and body.get("activationId"):
            return await self._record(str(body["activationId"]),
                                      time.monotonic() + timeout_ms / 1000 + ANSWER_SLACK_S)
        raise RemoteFailure(f"HTTP {status}: {body}")

    async def _record(self, remote_id: str, deadline: float) -> dict[str, Any]:
        while time.monotonic() < deadline:
            async with self.http.get(f"{ACTIVATIONS}/{remote_id}") as resp:
                if resp.status == 200:
                    return dict(await resp.json())
                await resp.read()
            await asyncio.sleep(RECORD_POLL_S)
        raise RemoteFailure(f"no record of remote activation {remote_id} in time")
