"""The initializer's view of an invoker's load heals itself from heartbeats."""

from __future__ import annotations

from bus.ids import now_ms
from bus.models import ActionSnapshot, ActivationRequest, Heartbeat, StatusCode
from initializer.registry import InvokerRegistry, Placed


def _request(aid: str) -> ActivationRequest:
    action = ActionSnapshot(namespace="guest", name="a", version="0.0.1", kind="python:3.11",
                            code_digest=None)
    return ActivationRequest(activation_id=aid, transaction_id="t", invoking_namespace="guest",
                             subject="guest", action=action, accepted_at=now_ms())


def _beat(at: int, work_memory: int) -> Heartbeat:
    return Heartbeat(invoker_id="i0", at=at, user_memory=1024, free_memory=1024, busy=0,
                     queued=0, work_memory=work_memory)


async def test_lost_completions_stop_counting_after_the_next_heartbeat() -> None:
    registry = InvokerRegistry(dead_after_s=10)
    t0 = now_ms()
    await registry.heartbeat(_beat(t0, work_memory=0))
    state = registry.invokers["i0"]
    # Four activations placed before the heartbeat that never sent a completion...
    for n in range(4):
        state.inflight[f"old{n}"] = Placed(_request(f"old{n}"), deadline=t0 + 60_000, at=t0 - 5)
    # ...and one placed after it, which the invoker could not have reported yet.
    state.inflight["new"] = Placed(_request("new"), deadline=t0 + 60_000, at=t0 + 5)
    [view] = registry.usable()
    assert view.inflight_memory == 256  # the heartbeat said the old ones are gone


async def test_own_count_is_used_when_it_is_the_smaller() -> None:
    registry = InvokerRegistry(dead_after_s=10)
    t0 = now_ms()
    await registry.heartbeat(_beat(t0, work_memory=768))  # another initializer's work too
    registry.invokers["i0"].inflight["mine"] = Placed(_request("mine"), t0 + 60_000, at=t0 - 5)
    [view] = registry.usable()
    assert view.inflight_memory == 256


async def test_direct_path_work_counts_although_nothing_was_placed() -> None:
    """Gateways' direct-path activations never pass this initializer: the heartbeat's figure
    is added on top of what it placed, so it does not overfill the invoker."""
    registry = InvokerRegistry(dead_after_s=10)
    t0 = now_ms()
    beat = _beat(t0, work_memory=768).model_copy(update={"direct_memory": 512})
    await registry.heartbeat(beat)
    registry.invokers["i0"].inflight["mine"] = Placed(_request("mine"), t0 + 60_000, at=t0 - 5)
    [view] = registry.usable()
    assert view.inflight_memory == 256 + 512


async def test_load_follows_placements_completions_and_replacements() -> None:
    registry = InvokerRegistry(dead_after_s=10)
    await registry.heartbeat(_beat(now_ms() - 1000, work_memory=0))
    for aid in ("a", "b", "c"):
        registry.placed("i0", _request(aid))
    registry.placed("i0", _request("b"))  # placed again: still one activation
    assert registry.usable()[0].inflight_memory == 3 * 256
    await registry.completed("i0", "a", StatusCode.SUCCESS)
    registry.timed_out("i0", "c")
    assert registry.usable()[0].inflight_memory == 256
    await registry.completed("i0", "b", StatusCode.SUCCESS)
    assert registry.usable()[0].inflight_memory == 0


async def test_a_backlog_in_the_invokers_queue_moves_every_deadline_on() -> None:
    registry = InvokerRegistry(dead_after_s=10, deadline_margin_s=0)
    t0 = now_ms()
    await registry.heartbeat(_beat(t0, work_memory=0))
    registry.placed("i0", _request("queued"))
    placed = registry.invokers["i0"].inflight["queued"]
    placed.deadline = t0 - 1  # as if it had waited in the queue past its deadline
    await registry.heartbeat(_beat(t0 + 1, work_memory=0))  # no backlog: it stays overdue
    assert [p.request.activation_id for _, p in registry.overdue()] == ["queued"]
    await registry.heartbeat(_beat(t0 + 2, work_memory=0).model_copy(update={"backlog": 3}))
    assert registry.overdue() == [] and placed.deadline > now_ms()
