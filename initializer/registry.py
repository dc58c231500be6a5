"""What this initializer knows about the invokers: their last heartbeat and the activations
it placed on them that have not completed yet."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bus.models import Heartbeat
from initializer.placement import InvokerView


@dataclass
class InvokerState:
    beat: Heartbeat
    seen_at: float  # monotonic
    inflight: dict[str, int] = field(default_factory=dict)  # activation id -> memory


class InvokerRegistry:
    def __init__(self, dead_after_s: float) -> None:
        self.dead_after_s = dead_after_s
        self.invokers: dict[str, InvokerState] = {}
        # Woken whenever capacity may have appeared: a heartbeat or a completion.
        self.changed = asyncio.Condition()

    async def heartbeat(self, beat: Heartbeat) -> None:
        state = self.invokers.get(beat.invoker_id)
        if state is None:
            self.invokers[beat.invoker_id] = InvokerState(beat, time.monotonic())
        else:
            state.beat, state.seen_at = beat, time.monotonic()
        async with self.changed:
            self.changed.notify_all()

    async def completed(self, invoker_id: str, activation_id: str) -> None:
        state = self.invokers.get(invoker_id)
        if state is not None and state.inflight.pop(activation_id, None) is not None:
            async with self.changed:
                self.changed.notify_all()

    def forget(self, invoker_id: str) -> None:
        """Drop an invoker until its next heartbeat (e.g. its queue vanished)."""
        self.invokers.pop(invoker_id, None)

    def placed(self, invoker_id: str, activation_id: str, memory: int) -> None:
        self.invokers[invoker_id].inflight[activation_id] = memory

    def status(self, invoker_id: str, now: float | None = None) -> str:
        """OpenWhisk's /invokers vocabulary, from heartbeats alone (for now)."""
        state = self.invokers[invoker_id]
        now = time.monotonic() if now is None else now
        if now - state.seen_at > self.dead_after_s or state.beat.draining:
            return "down"
        return "up"

    def usable(self) -> list[InvokerView]:
        now = time.monotonic()
        return [
            InvokerView(
                id=i, user_memory=s.beat.user_memory,
                inflight_memory=sum(s.inflight.values()), warm=frozenset(s.beat.warm),
            )
            for i, s in self.invokers.items()
            if self.status(i, now) == "up"
        ]
