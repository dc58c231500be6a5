"""A conductor action's steps (OpenWhisk's ``docs/conductors.md`` and
``PrimitiveActions.scala``): its own code runs first (a *secondary* activation) and answers a
continuation ``{action, params, state}``; the named action runs on ``params``, and its result,
with ``state`` over it, goes to the conductor again, until a continuation names no action.
Its ``params`` (or, without, the whole answer) is then the composition's result, with the
status of that last step.

What goes wrong on the way to a component (a name that is none, an action missing or not the
caller's to run, too many components) is handed to the conductor as ``{"error": ...}``, as a
failing component's result is: the conductor decides (Composer's ``try`` relies on that).
Only an activation that never completes ends the composition at once.
"""

from __future__ import annotations

import json
from typing import Any

from bus.models import ActivationRequest, StatusCode
from initializer.compositions import (
    MAX_COMPONENTS,
    CompositionRunner,
    Failures,
    Progress,
    Step,
)

TOO_LONG = "Too many actions in the composition."

FAILURES = Failures(
    missing=lambda path: f"Failed to resolve action with name '{path}' during composition.",
    forbidden=lambda path: (
        f"Failed entitlement check for action with name '{path}' during composition."),
    lost=lambda aid: f"Timeout reached when retrieving activation {aid} during composition.",
)


def invalid_name(value: Any) -> str:
    shown = json.dumps(value, separators=(",", ":"))
    return f"Failed to parse action name from json value {shown} during composition."


def action_path(value: Any, default_namespace: str) -> str | None:
    """``/ns/[pkg/]name`` for a continuation's ``action`` (``name``, ``pkg/name``,
    ``/ns/name``, ``/ns/pkg/name`` or ``ns/pkg/name``); None if it names no action."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    parts = text.strip("/").split("/")
    if not all(part.strip() for part in parts) or len(parts) > 3:
        return None
    if text.startswith("/") or len(parts) == 3:
        return "/" + "/".join(parts) if len(parts) >= 2 else None
    return f"/{default_namespace}/" + "/".join(parts)


def _boxed(value: Any, key: str) -> dict[str, Any]:
    """A dictionary as it is; anything else as ``{key: value}``."""
    return value if isinstance(value, dict) else {key: value}


async def conduct(
    runner: CompositionRunner, req: ActivationRequest, progress: Progress, resumed: bool
) -> None:
    conductor = f"/{req.action.path}"
    payload: Any = req.payload  # the conductor's next input
    merged = True  # the first takes the request's payload as the gateway merged it
    state: dict[str, Any] = {}
    components = secondaries = 0
    while True:
        if secondaries > 2 * MAX_COMPONENTS:
            progress.fail(StatusCode.APPLICATION_ERROR, TOO_LONG)
            return
        secondaries += 1
        step = Step(conductor, {**_boxed(payload, "value"), **state}, secondary=True,
                    merged=merged)
        merged = False
        if not await runner.step(req, step, progress, resumed, FAILURES):
            return  # the conductor itself could not run
        answer = progress.result if isinstance(progress.result, dict) else {}
        params = _boxed(answer["params"], "value") if "params" in answer else None
        state = _boxed(answer["state"], "state") if "state" in answer else {}
        if "action" not in answer:
            if params is not None:
                progress.result = params
            return  # with the status of this last step
        path = action_path(answer["action"], req.invoking_namespace)
        if path is None or components >= MAX_COMPONENTS:
            payload = {"error": invalid_name(answer["action"]) if path is None else TOO_LONG}
            continue
        components += 1
        component = Step(path, params or {}, caller=req.invoking_namespace)
        ran = await runner.step(req, component, progress, resumed, FAILURES)
        if not ran and progress.status == StatusCode.WHISK_ERROR:
            return  # it never completed
        # Its result, or why it could not run, is the conductor's next input.
        payload = progress.result
