"""Invoker health states (no cluster needed): heartbeats, whisk errors, forced timeouts."""

from __future__ import annotations

import asyncio

from bus.models import ActionSnapshot, ActivationRequest, Heartbeat, Limits, StatusCode
from initializer.health import DOWN, UNHEALTHY, UNRESPONSIVE, UP, Outcome, OutcomeRing, health
from initializer.registry import InvokerRegistry


def _beat(invoker_id: str, draining: bool = False) -> Heartbeat:
    return Heartbeat(invoker_id=invoker_id, at=0, user_memory=1024, free_memory=1024, busy=0,
                     queued=0, draining=draining)


def _request(aid: str, accepted_at: int, timeout_ms: int = 1000) -> ActivationRequest:
    action = ActionSnapshot(namespace="guest", name="a", version="0.0.1", kind="python:3.11",
                            limits=Limits(timeout=timeout_ms))
    return ActivationRequest(activation_id=aid, transaction_id="t", invoking_namespace="guest",
                             subject="guest", action=action, accepted_at=accepted_at)


def _state(ring: OutcomeRing, *, seen_ago: float = 0.0, overdue: bool = False) -> str:
    now = 1000.0
    return health(now=now, seen_at=now - seen_ago, draining=False, ring=ring, overdue=overdue,
                  dead_after_s=10, window_s=30)


def test_states_follow_heartbeats_and_the_last_ten_outcomes() -> None:
    ring = OutcomeRing()
    assert _state(ring) == UP
    assert _state(ring, seen_ago=11) == DOWN
    for _ in range(3):
        ring.add(Outcome.WHISK_ERROR, 1000.0)
    assert _state(ring) == UP  # tolerance: 3
    ring.add(Outcome.WHISK_ERROR, 1000.0)
    assert _state(ring) == UNHEALTHY
    for _ in range(7):
        ring.add(Outcome.OK, 1000.0)  # pushes errors out of the last 10
    assert _state(ring) == UP
    assert _state(ring, overdue=True) == UNRESPONSIVE
    for _ in range(4):
        ring.add(Outcome.TIMEOUT, 1000.0)
    assert _state(ring) == UNRESPONSIVE


def test_outcomes_age_out_so_a_sick_invoker_can_recover() -> None:
    ring = OutcomeRing()
    for _ in range(5):
        ring.add(Outcome.WHISK_ERROR, 900.0)  # 100 s ago, window 30 s
    assert _state(ring) == UP


async def test_registry_places_only_on_up_invokers_and_sweeps_overdue_work() -> None:
    registry = InvokerRegistry(10, deadline_margin_s=0)
    await registry.heartbeat(_beat("a"))
    await registry.heartbeat(_beat("b", draining=True))
    assert [v.id for v in registry.usable()] == ["a"]
    assert registry.down() == ["b"]
    registry.placed("a", _request("late", accepted_at=0, timeout_ms=1))
    registry.placed("a", _request("fine", accepted_at=0, timeout_ms=60_000))
    await asyncio.sleep(0.01)  # "late" is past its deadline, counted from its placement
    assert registry.statuses()["a"] == UNRESPONSIVE  # holds work past its deadline
    assert [p.request.activation_id for _, p in registry.overdue()] == ["late"]
    registry.timed_out("a", "late")
    assert registry.statuses()["a"] == UP
    await registry.completed("a", "fine", StatusCode.SUCCESS)
    assert registry.invokers["a"].inflight == {}
