"""A sequence's steps: its components in order, each on the previous one's result; a
component that fails (or answers an ``error``) ends it with that result."""

from __future__ import annotations

from bus.models import ActivationRequest
from initializer.compositions import CompositionRunner, Failures, Progress, Step

COMPONENT_MISSING = "Sequence component does not exist."
COMPONENT_LOST = "Sequence component did not complete in time."

FAILURES = Failures(missing=lambda path: COMPONENT_MISSING,
                    forbidden=lambda path: COMPONENT_MISSING,
                    lost=lambda aid: COMPONENT_LOST)


async def run_sequence(
    runner: CompositionRunner, req: ActivationRequest, progress: Progress, resumed: bool
) -> None:
    for path in req.action.components or []:
        ran = await runner.step(req, Step(path, progress.payload), progress, resumed, FAILURES)
        if not ran or progress.failed:
            return  # short-circuit: the failing component's result is the sequence's
        result = progress.result
        progress.payload = result if isinstance(result, dict) else {}
