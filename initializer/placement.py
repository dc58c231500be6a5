"""Choosing an invoker for an activation: a pure function of what the registry knows.

Order of preference (after OpenWhisk's sharding balancer, plus warm affinity):
1. an invoker that reported an idle warm container for this exact action and has room, or
   else the one this initializer placed the action on last (heartbeats lag up to a second);
2. the action's home invoker, then the next ones along a hash-determined step (so the same
   action keeps landing where its containers are warm), taking the first with room;
3. every local invoker is full: a remote pool with room (invoker/remote_pool.py), if the
   action may leave and the pool takes its namespace;
4. else the least loaded local invoker, which buffers the work (a remote pool only when
   there is no local one at all).
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
    remote: bool = False
    namespaces: frozenset[str] | None = None  # a remote pool's: whose work it takes

    def takes(self, namespace: str, may_leave: bool) -> bool:
        return not self.remote or (may_leave and (self.namespaces is None
                                                  or namespace in self.namespaces))

    def has_room(self, memory: int) -> bool:
        return self.inflight_memory + memory <= self.user_memory


def _stable_hash(value: str) -> int:
    # Python's hash() is salted per process; placement must agree across initializers.
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


def _coprime_step(n: int, seed: int) -> int:
    steps = [s for s in range(1, n + 1) if math.gcd(s, n) == 1]
    return steps[seed % len(steps)]


def choose_invoker(
    invokers: list[InvokerView], action_key: str, memory: int, last_placed: str | None = None,
    *, namespace: str = "", may_leave: bool = False,
) -> str | None:
    """``last_placed`` is where this initializer sent the action last: its container is warm
    there (or about to be) before any heartbeat can say so."""
    usable = [i for i in invokers if i.takes(namespace, may_leave)]
    local = sorted((i for i in usable if not i.remote), key=lambda i: i.id)
    remote = [i for i in usable if i.remote]
    chosen = _with_room(local, action_key, memory, last_placed)
    if chosen is not None:
        return chosen
    bursting = [i for i in remote if i.has_room(memory)]
    if bursting:
        return min(bursting, key=lambda i: i.inflight_memory / i.user_memory).id
    fallback = local or remote
    if not fallback:
        return None
    return min(fallback, key=lambda i: i.inflight_memory / i.user_memory).id


def _with_room(
    ordered: list[InvokerView], action_key: str, memory: int, last_placed: str | None
) -> str | None:
    if not ordered:
        return None
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
    return None
