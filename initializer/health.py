"""Invoker health after OpenWhisk's ``InvokerSupervision``: a state from heartbeats and from
the invoker's recent outcomes.

- ``down``: no heartbeat for ``dead_after_s`` (a frozen process keeps its AMQP connection but
  stops beating), or the invoker said it is draining;
- ``unhealthy``: more than 3 of its last 10 outcomes were whisk internal errors;
- ``unresponsive``: more than 3 of its last 10 outcomes were forced timeouts, or an activation
  this initializer placed there is past its deadline without a completion;
- ``up``: otherwise. Only ``up`` invokers get work.

Unlike OpenWhisk, which sends test activations to a sick invoker, outcomes here age out after
``window_s``: a sick invoker gets no work, so it would otherwise never produce the successes
that make it healthy again.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum

RING_SIZE = 10
TOLERANCE = 3


class Outcome(Enum):
    OK = "ok"
    WHISK_ERROR = "whisk_error"
    TIMEOUT = "timeout"


UP = "up"
UNHEALTHY = "unhealthy"
UNRESPONSIVE = "unresponsive"
DOWN = "down"


@dataclass
class OutcomeRing:
    """The last ``RING_SIZE`` outcomes with the (monotonic) time each was seen."""

    entries: deque[tuple[float, Outcome]] = field(
        default_factory=lambda: deque(maxlen=RING_SIZE))

    def add(self, outcome: Outcome, at: float) -> None:
        self.entries.append((at, outcome))

    def count(self, outcome: Outcome, since: float) -> int:
        return sum(1 for at, o in self.entries if o is outcome and at >= since)


def health(
    *, now: float, seen_at: float, draining: bool, ring: OutcomeRing, overdue: bool,
    dead_after_s: float, window_s: float,
) -> str:
    """The /invokers state of one invoker; ``overdue``: it holds work past its deadline."""
    if draining or now - seen_at > dead_after_s:
        return DOWN
    since = now - window_s
    if ring.count(Outcome.WHISK_ERROR, since) > TOLERANCE:
        return UNHEALTHY
    if overdue or ring.count(Outcome.TIMEOUT, since) > TOLERANCE:
        return UNRESPONSIVE
    return UP
