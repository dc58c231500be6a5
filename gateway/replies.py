"""The gateway's reply waiters: blocking invokes wait here for their ``ActivationDone``."""

from __future__ import annotations

from bus.broker import Broker
from bus.replies import ReplyFuture, ReplyWaiters

__all__ = ["ReplyFuture", "Waiters"]


class Waiters(ReplyWaiters):
    def __init__(self, broker: Broker, gateway_id: str, *, prefetch: int = 256) -> None:
        super().__init__(broker, gateway_id, prefetch=prefetch)
        self.gateway_id = gateway_id
        self.released = False

    def register(self, activation_id: str) -> ReplyFuture:
        future = super().register(activation_id)
        if self.released:  # shutting down: whoever registers now is answered at once
            future.set_result(None)
        return future

    def release_all(self) -> None:
        """Answer every waiting request now (with 202) instead of holding shutdown, and every
        later one too."""
        self.released = True
        for future in self._pending.values():
            if not future.done():
                future.set_result(None)
        self._pending.clear()

    async def close(self) -> None:
        self.release_all()
        await super().close()
