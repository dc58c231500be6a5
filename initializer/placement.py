"""Choosing an invoker for an activation: a pure function of what the registry knows.

Order of preference (after OpenWhisk's sharding balancer, plus warm affinity):
1. an invoker that reported an idle warm container for this exact action and has room, or
   else the one this initializer placed the action on last (heartbeats lag up to a second);
2. the action's home invoker, then the next ones along a hash-determined step (so the same
   action keeps landing where its containers are warm), taking the first with room;
3. everyone is full: the least loaded usable invoker, which buffers the work.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class InvokerView:
    id: str
    user_memory: int
    inflight_memory: int  # placed by this initializer and not completed yet
    warm: frozenset[str]

    def has_room(self, memory: int) -> bool:
        return self.inflight_memory + memory <= self.user_memory


def _stable_hash(value: str) -> int:
    # Python's hash() is salted per process; placement must agree across initializers.
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


def _coprime_step(n: int, seed: int) -> int:
    steps = [s for s in range(1, n + 1) if math.gcd(s, n) == 1]
    return steps[seed % len(steps)]


def choose_invoker(
    invokers: list[InvokerView], action_key: str, memory: int, last_placed: str | None = None
) -> str | None:
    """``last_placed`` is where this initializer sent the action last: its container is warm
    there (or about to be) before any heartbeat can say so."""
    if not invokers:
        return None
    ordered = sorted(invokers, key=lambda i: i.id)
    warm = [i for i in ordered if action_key in i.warm and i.has_room(memory)]
    if warm:
        return min(warm, key=lambda i: i.inflight_memory).id
    recent = next((i for i in ordered if i.id == last_placed), None)
    if recent is not None and recent.has_room(memory):
        return recent.id
    seed = _stable_hash(action_key)
    n = len(ordered)
    home, step = seed % n, _coprime_step(n, seed)
    for probe in range(n):
        candidate = ordered[(home + probe * step) % n]
        if candidate.has_room(memory):
            return candidate.id
    return min(ordered, key=lambda i: i.inflight_memory / i.user_memory).id
