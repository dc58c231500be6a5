"""An invoker may finish an activation and report it before the broker's confirm of its
placement reaches the initializer: the placement must already be counted then, or the
completion is lost and the work looks stuck on that invoker until its deadline. A publisher
that completes the work before it returns stands in for that race (no RabbitMQ needed)."""

from __future__ import annotations

from typing import Any

from bus.config import Settings
from bus.ids import now_ms
from bus.models import ActionSnapshot, ActivationRequest, Heartbeat, StatusCode
from initializer.service import Initializer


class InstantInvoker:
    """Publishing runs the activations to completion before the confirm comes back."""

    def __init__(self) -> None:
        self.initializer: Initializer | None = None
        self.sent: list[str] = []

    async def publish_activations(self, activations: list[ActivationRequest], *,
                                  routing_key: str) -> None:
        assert self.initializer is not None
        for activation in activations:
            self.sent.append(activation.activation_id)
            await self.initializer.registry.completed("i0", activation.activation_id,
                                                      StatusCode.SUCCESS)

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected broker call {name}")


async def test_a_completion_that_beats_the_confirm_is_not_lost() -> None:
    broker = InstantInvoker()
    initializer = Initializer(Settings(), store=None, broker=broker)  # type: ignore[arg-type]
    broker.initializer = initializer
    await initializer.registry.heartbeat(Heartbeat(
        invoker_id="i0", at=now_ms() - 1000, user_memory=1024, free_memory=1024, busy=0,
        queued=0))
    action = ActionSnapshot(namespace="guest", name="a", version="0.0.1", kind="python:3.11",
                            code_digest=None)
    for n in range(3):
        await initializer._place(ActivationRequest(
            activation_id=f"a{n}", transaction_id="t", invoking_namespace="guest",
            subject="guest", action=action, accepted_at=now_ms()))
    assert broker.sent == ["a0", "a1", "a2"]
    assert initializer.registry.invokers["i0"].inflight == {}
    assert initializer.registry.usable()[0].inflight_memory == 0
