"""What a container's answers mean: OpenWhisk's rules for turning /init and /run responses
into an activation outcome (reference §3.1-3.2). Pure functions, unit-tested."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bus.models import StatusCode

MAX_RESULT_BYTES = 1024 * 1024
# Bodies up to this much past the limit are read and reported; beyond it the container's
# answer is cut off unread, so a hostile one cannot make the invoker buffer gigabytes.
RESULT_SLACK_BYTES = 64 * 1024

TIMEOUT_MESSAGE = "The action exceeded its time limits of {ms} milliseconds."
INIT_TIMEOUT_MESSAGE = (
    "The action exceeded its time limits of {ms} milliseconds during initialization."
)
INIT_EXITED = "The action did not initialize and exited unexpectedly."
RUN_EXITED = "The action did not produce a valid response and exited unexpectedly."
OUT_OF_MEMORY = "The action exhausted its memory and was aborted."
PROVISION_FAILED = "Failed to provision resources to run the action."
IMAGE_UNAVAILABLE = "Failed to pull container image '{image}'."
LOGS_MISSING = "The action did not initialize or run as expected. Log data might be missing."
LOGS_TRUNCATED = "Logs were truncated because the total bytes size exceeds the limit of {n} bytes."


@dataclass(frozen=True)
class Outcome:
    status: StatusCode
    result: Any
    timed_out: bool = False
    broken_container: bool = False  # the connection to it was abandoned mid-answer

    @property
    def container_reusable(self) -> bool:
        """Developer and internal errors leave a container in an unknown state."""
        if self.broken_container:
            return False
        return self.status in (StatusCode.SUCCESS, StatusCode.APPLICATION_ERROR)


def developer_error(message: Any, *, timed_out: bool = False) -> Outcome:
    return Outcome(StatusCode.DEVELOPER_ERROR, {"error": message}, timed_out)


def whisk_error(message: str) -> Outcome:
    return Outcome(StatusCode.WHISK_ERROR, {"error": message})


def init_failure(status: int, body: bytes) -> Outcome:
    """A non-200 answer to /init."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "error" in parsed:
        return developer_error(parsed["error"])
    return developer_error(
        f"The action failed during initialization: {body.decode(errors='replace')}"
    )


def result_too_large(length: int, head: bytes, *, broken: bool = True) -> Outcome:
    truncated = head[:1024].decode(errors="replace")
    return Outcome(StatusCode.APPLICATION_ERROR, {"error": (
        f"The action produced a response that exceeded the allowed length: "
        f"{length} > {MAX_RESULT_BYTES} bytes. The truncated response was: {truncated}"
    )}, broken_container=broken)


def run_outcome(status: int, body: bytes) -> Outcome:
    """An answer to /run."""
    if len(body) > MAX_RESULT_BYTES:
        return result_too_large(len(body), body, broken=False)
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if status == 200 and isinstance(parsed, dict):
        if "error" in parsed:
            return Outcome(StatusCode.APPLICATION_ERROR, {"error": parsed["error"]})
        return Outcome(StatusCode.SUCCESS, parsed)
    if status == 200 and isinstance(parsed, list):
        return Outcome(StatusCode.SUCCESS, parsed)
    if isinstance(parsed, dict) and "error" in parsed:
        return developer_error(parsed["error"])
    return developer_error(
        "The action did not produce a valid JSON or JSON Array response: "
        + body.decode(errors="replace")
    )
