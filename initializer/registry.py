"""What this initializer knows about the invokers: their last heartbeat, their recent outcomes,
and the activations it placed on them that have not completed yet (with their deadlines)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from bus.ids import now_ms
from bus.models import ActivationRequest, Heartbeat, StatusCode
from initializer.health import DOWN, UP, Outcome, OutcomeRing, health
from initializer.placement import InvokerView

LAST_PLACED_ENTRIES = 10_000

log = logging.getLogger(__name__)


@dataclass
class Placed:
    request: ActivationRequest
    deadline: int  # epoch ms: past it with no completion, the activation is answered with an error
    at: int = field(default_factory=now_ms)  # epoch ms, when it was placed


class InFlight(dict[str, Placed]):
    """Activation id -> placement, keeping what placement reads for every activation (a scan
    of a few hundred entries each time was the initializer's hottest code): the memory of all
    of them, of those placed after ``beat_at`` (the last heartbeat's time), and a lower bound
    of their deadlines (deadlines are only ever extended, so it stays one)."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = 0
        self.memory_since_beat = 0
        self.beat_at = 0
        self._earliest_deadline = math.inf

    def any_overdue(self, now: int) -> bool:
        if self._earliest_deadline >= now:
            return False
        self._earliest_deadline = min((p.deadline for p in self.values()), default=math.inf)
        return self._earliest_deadline < now

    def __setitem__(self, activation_id: str, placed: Placed) -> None:
        self.pop(activation_id, None)
        super().__setitem__(activation_id, placed)
        self._count(placed, 1)

    def __delitem__(self, activation_id: str) -> None:
        self._count(self[activation_id], -1)
        super().__delitem__(activation_id)

    def pop(self, activation_id: str, default: Placed | None = None) -> Placed | None:  # type: ignore[override]
        placed = super().pop(activation_id, None)
        if placed is None:
            return default
        self._count(placed, -1)
        return placed

    def beat(self, at: int) -> None:
        self.beat_at = at
        self.memory_since_beat = sum(
            p.request.action.limits.memory for p in self.values() if p.at > at)

    def _count(self, placed: Placed, sign: int) -> None:
        if sign > 0:
            self._earliest_deadline = min(self._earliest_deadline, placed.deadline)
        memory = sign * placed.request.action.limits.memory
        self.memory += memory
        if placed.at > self.beat_at:
            self.memory_since_beat += memory


@dataclass
class InvokerState:
    beat: Heartbeat
    seen_at: float  # monotonic
    inflight: InFlight = field(default_factory=InFlight)
    ring: OutcomeRing = field(default_factory=OutcomeRing)

    def overdue(self, now: int) -> list[Placed]:
        return [p for p in self.inflight.values() if p.deadline < now]


class InvokerRegistry:
    def __init__(
        self, dead_after_s: float, *, deadline_margin_s: float = 60.0, window_s: float = 30.0
    ) -> None:
        self.dead_after_s = dead_after_s
        self.deadline_margin_ms = int(deadline_margin_s * 1000)
        self.window_s = window_s
        self.invokers: dict[str, InvokerState] = {}
        self._last_placed: OrderedDict[str, str] = OrderedDict()  # action key -> invoker id
        self._last_status: dict[str, str] = {}
        # Woken whenever capacity may have appeared: a heartbeat or a completion.
        self.changed = asyncio.Condition()

    async def heartbeat(self, beat: Heartbeat) -> None:
        known = self.invokers.get(beat.invoker_id)
        if known is None:
            self.invokers[beat.invoker_id] = InvokerState(beat, time.monotonic())
        else:
            known.beat, known.seen_at = beat, time.monotonic()
        state = self.invokers[beat.invoker_id]
        state.inflight.beat(beat.at)
        self._extend_held(state, beat.held)
        async with self.changed:
            self.changed.notify_all()

    def hearing_restored(self) -> None:
        """Our broker connection is back: silence meanwhile was ours, not the invokers'. Each
        gets a fresh heartbeat window and its work a fresh deadline."""
        now, seen = now_ms(), time.monotonic()
        for state in self.invokers.values():
            state.seen_at = seen
            for placed in state.inflight.values():
                placed.deadline = max(placed.deadline, now + placed.request.action.limits.timeout
                                      + self.deadline_margin_ms)

    def _extend_held(self, state: InvokerState, held: list[str]) -> None:
        """Work a heart-beating invoker still holds may wait there behind other work for
        longer than its own time limit: its deadline counts from now. So does all the work
        placed there while its queue still has a backlog: it waits in line, it is not lost
        (with no room anywhere, work piles up in the least loaded invoker's queue). The
        invoker bounds each run by the action's timeout; the deadline is for invokers that
        stopped or lost it."""
        now = now_ms()
        waiting = state.inflight.values() if state.beat.backlog else (
            placed for placed in map(state.inflight.get, held) if placed is not None)
        for placed in waiting:
            placed.deadline = max(placed.deadline, now + placed.request.action.limits.timeout
                                  + self.deadline_margin_ms)

    async def completed(self, invoker_id: str, activation_id: str, status: StatusCode) -> None:
        state = self.invokers.get(invoker_id)
        if state is not None:
            bad = status == StatusCode.WHISK_ERROR
            state.ring.add(Outcome.WHISK_ERROR if bad else Outcome.OK, time.monotonic())
        # It may have completed elsewhere (drained from a dead invoker and placed again): it
        # is no longer in flight anywhere.
        freed = [s.inflight.pop(activation_id, None) for s in self.invokers.values()]
        if any(p is not None for p in freed):
            async with self.changed:
                self.changed.notify_all()

    def timed_out(self, invoker_id: str, activation_id: str) -> None:
        """A forced completion: the deadline passed with no completion."""
        state = self.invokers.get(invoker_id)
        if state is not None and state.inflight.pop(activation_id, None) is not None:
            state.ring.add(Outcome.TIMEOUT, time.monotonic())

    def unplaced(self, invoker_id: str, activation_id: str) -> None:
        """A placement that did not happen after all (its publish failed)."""
        state = self.invokers.get(invoker_id)
        if state is not None:
            state.inflight.pop(activation_id, None)

    def forget(self, invoker_id: str) -> None:
        """Drop an invoker until its next heartbeat (e.g. its queue vanished)."""
        self.invokers.pop(invoker_id, None)

    def placed(self, invoker_id: str, request: ActivationRequest) -> None:
        # From now, not from acceptance: time spent waiting here for an invoker with room (back
        # pressure) is not the invoker's delay.
        deadline = now_ms() + request.action.limits.timeout + self.deadline_margin_ms
        # Placed again (drained from a stopped invoker's queue): only the newest placement is
        # in flight, else the old one's deadline would answer it with an error meanwhile.
        for state in self.invokers.values():
            state.inflight.pop(request.activation_id, None)
        self.invokers[invoker_id].inflight[request.activation_id] = Placed(request, deadline)
        self._last_placed[request.action.key] = invoker_id
        self._last_placed.move_to_end(request.action.key)
        if len(self._last_placed) > LAST_PLACED_ENTRIES:
            self._last_placed.popitem(last=False)

    def last_placed(self, action_key: str) -> str | None:
        return self._last_placed.get(action_key)

    def overdue(self) -> list[tuple[str, Placed]]:
        now = now_ms()
        return [(i, p) for i, s in self.invokers.items() for p in s.overdue(now)]

    def status(self, invoker_id: str, now: float | None = None) -> str:
        """OpenWhisk's /invokers vocabulary."""
        state = self.invokers[invoker_id]
        now = time.monotonic() if now is None else now
        current = health(
            now=now, seen_at=state.seen_at, draining=state.beat.draining, ring=state.ring,
            overdue=state.inflight.any_overdue(now_ms()), dead_after_s=self.dead_after_s,
            window_s=self.window_s,
        )
        if current != self._last_status.get(invoker_id):
            log.info("invoker %s is %s (in flight: %d)", invoker_id, current, len(state.inflight))
            self._last_status[invoker_id] = current
        return current

    def statuses(self) -> dict[str, str]:
        now = time.monotonic()
        return {i: self.status(i, now) for i in self.invokers}

    def down(self) -> list[str]:
        return [i for i, s in self.statuses().items() if s == DOWN]

    def usable(self) -> list[InvokerView]:
        now = time.monotonic()
        return [
            InvokerView(
                id=i, user_memory=s.beat.user_memory, inflight_memory=_load(s),
                warm=frozenset(s.beat.warm), remote=s.beat.remote,
                namespaces=None if s.beat.namespaces is None else frozenset(s.beat.namespaces),
            )
            for i, s in self.invokers.items()
            if self.status(i, now) == UP
        ]


def _load(state: InvokerState) -> int:
    """Memory of the work on an invoker: what this initializer placed there and has not seen
    complete, but never more than the invoker's own last heartbeat reported plus what was
    placed after it (a completion that got lost must not make an invoker look full), and the
    direct-path work its heartbeat reported."""
    inflight = state.inflight
    # Gateways' direct-path work was never placed here: only the heartbeat knows of it.
    direct = state.beat.direct_memory
    return min(inflight.memory,
               state.beat.work_memory - direct + inflight.memory_since_beat) + direct
