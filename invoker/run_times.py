"""How long runs take, as the pool has seen them: per action, how long a warm run holds its
container; overall, how much longer a cold start makes a run. Exponentially weighted, so they
follow the load. Times come from the events' ``now``: the pool still reads no clock.

The pool uses them for one decision (see pool.py): a job with no idle warm container waits for
one of its action's busy containers instead of starting a new one when the action's backlog
would drain through them sooner than a cold start would finish.
"""

from __future__ import annotations

from typing import Literal

WEIGHT = 0.2  # of each new sample
COLD_START_S = 0.5  # until one has been seen: docker create+start+ready is 0.2-0.5 s


class RunTimes:
    def __init__(self, cold_start_s: float = COLD_START_S) -> None:
        self._warm_run_s: dict[str, float] = {}
        self.cold_start_s = cold_start_s

    def warm_run_s(self, action_key: str) -> float | None:
        return self._warm_run_s.get(action_key)

    def finished(
        self, action_key: str, start: Literal["warm", "prewarm", "cold"], seconds: float
    ) -> None:
        """A job of ``action_key`` that started ``start`` held its container ``seconds``."""
        run_s = self._warm_run_s.get(action_key)
        if start == "warm":
            self._warm_run_s[action_key] = seconds if run_s is None else _mix(run_s, seconds)
        elif start == "cold":
            self.cold_start_s = _mix(self.cold_start_s, max(0.0, seconds - (run_s or 0.0)))

    def forget(self, action_key: str) -> None:
        """No container holds the action any more."""
        self._warm_run_s.pop(action_key, None)


def _mix(estimate: float, sample: float) -> float:
    return (1 - WEIGHT) * estimate + WEIGHT * sample
