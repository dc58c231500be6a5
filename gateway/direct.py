"""The gateway's end of the direct path (DESIGN §7): a blocking activation of an action some
invoker holds warm goes straight to that invoker's socket, one round trip instead of three
broker hops through the initializer.

Where to send: the invoker that ran the action last (every record names its invoker), else
one whose heartbeat lists the action warm. Heartbeats also say whether an invoker is alive,
draining, and where its socket is. The invoker takes the activation only if it has an idle
warm container right now; otherwise it declines at once and the gateway publishes as usual.

What can go wrong, and what the caller (``gateway.invoke``) does about it:
* declined, or no connection: publish the request as usual;
* the connection broke after sending: the invoker may have died mid-run; publish as usual
  (at least once; the first record written wins);
* no answer in time (a frozen invoker, or the caller's wait ended first): publish it as
  *held by* that invoker, so the initializer supervises it there like its own placements.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from bus.codec import pack, unpack
from bus.frames import frame, read_frame
from bus.models import ActivationRecord, ActivationRequest, DirectAnswer, Heartbeat

log = logging.getLogger(__name__)

LAST_RAN_ENTRIES = 10_000
STALE_BEATS = 3  # an invoker silent for this many heartbeat intervals gets nothing direct
CONNECT_BACKOFF_S = 5.0  # after a failed connect, the invoker's socket is left alone this long


class Released(Exception):
    """The gateway is shutting down and stopped waiting."""


class Miss(enum.Enum):
    """Why the direct path gave no record."""

    DECLINED = "declined"  # not taken (no idle warm container): nothing ran
    LOST = "lost"  # no connection, or it broke: it may or may not have run
    PENDING = "pending"  # still running (or frozen) when the wait ended


@dataclass
class _Invoker:
    socket: str | None
    seen_at: float  # monotonic
    draining: bool
    warm: frozenset[str]


@dataclass
class _Link:
    """One connection to an invoker's socket; answers matched to requests by activation id."""

    path: str
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    pending: dict[str, asyncio.Future[DirectAnswer]] = field(default_factory=dict)
    connecting: asyncio.Lock = field(default_factory=asyncio.Lock)
    failed_at: float = -CONNECT_BACKOFF_S
    reading: asyncio.Task[None] | None = None

    @property
    def open(self) -> bool:
        return self.writer is not None and not self.writer.is_closing()

    async def connect(self) -> None:
        async with self.connecting:
            if self.open:
                return
            if time.monotonic() - self.failed_at < CONNECT_BACKOFF_S:
                raise ConnectionError(f"{self.path} failed recently")
            try:
                self.reader, self.writer = await asyncio.open_unix_connection(self.path)
            except OSError as exc:
                self.failed_at = time.monotonic()
                raise ConnectionError(str(exc)) from exc
            self.reading = asyncio.create_task(self._read(self.reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                answer = unpack(await read_frame(reader), DirectAnswer)
                waiter = self.pending.pop(answer.activation_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(answer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("direct connection to %s failed", self.path)
        finally:
            self.close()

    def release(self) -> None:
        """Stop waiting for the answers in flight (shutdown): they count as not answered."""
        pending, self.pending = self.pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(Released())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = self.reader = None
        pending, self.pending = self.pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"connection to {self.path} lost"))

    async def call(self, request: ActivationRequest, timeout_s: float) -> DirectAnswer:
        """Raises ``ConnectionError`` (nothing or something ran) or ``TimeoutError``."""
        await self.connect()
        assert self.writer is not None
        aid = request.activation_id
        waiter: asyncio.Future[DirectAnswer] = asyncio.get_running_loop().create_future()
        self.pending[aid] = waiter
        self.writer.write(frame(pack(request)))
        try:
            return await asyncio.wait_for(waiter, timeout_s)
        finally:
            self.pending.pop(aid, None)


class DirectPath:
    """Fed every heartbeat through ``saw`` (gateway.heartbeats)."""

    def __init__(self, heartbeat_interval_s: float) -> None:
        self.stale_after_s = STALE_BEATS * heartbeat_interval_s
        self._invokers: dict[str, _Invoker] = {}
        self._last_ran: OrderedDict[str, str] = OrderedDict()  # action key -> invoker id
        self._links: dict[str, _Link] = {}
        self._released = False

    def release_all(self) -> None:
        """Shutdown: answers still awaited are given up (their activations are then published
        held by their invokers, and their callers get 202), and nothing more goes direct."""
        self._released = True
        for link in self._links.values():
            link.release()

    async def close(self) -> None:
        for link in self._links.values():
            link.close()
            if link.reading is not None:
                link.reading.cancel()

    def saw(self, beat: Heartbeat) -> None:
        self._invokers[beat.invoker_id] = _Invoker(
            beat.direct, time.monotonic(), beat.draining, frozenset(beat.warm))

    def ran(self, action_key: str, record: ActivationRecord) -> None:
        """Remember where an action just ran: its container is warm there now."""
        if record.invoker:
            self._last_ran[action_key] = record.invoker
            self._last_ran.move_to_end(action_key)
            if len(self._last_ran) > LAST_RAN_ENTRIES:
                self._last_ran.popitem(last=False)

    def route(self, action_key: str) -> str | None:
        now = time.monotonic()
        last = self._last_ran.get(action_key)
        if last is not None and self._reachable(last, now):
            return last
        for invoker_id, invoker in self._invokers.items():
            if action_key in invoker.warm and self._reachable(invoker_id, now):
                return invoker_id
        return None

    def _reachable(self, invoker_id: str, now: float) -> bool:
        invoker = self._invokers.get(invoker_id)
        if invoker is None or invoker.socket is None or invoker.draining:
            return False
        if now - invoker.seen_at > self.stale_after_s:
            return False
        link = self._links.get(invoker_id)
        return link is None or link.open or now - link.failed_at >= CONNECT_BACKOFF_S

    async def run(
        self, invoker_id: str, request: ActivationRequest, timeout_s: float
    ) -> ActivationRecord | Miss:
        invoker = self._invokers.get(invoker_id)
        if invoker is None or invoker.socket is None:
            return Miss.DECLINED
        link = self._links.get(invoker_id)
        if link is None or link.path != invoker.socket:
            if link is not None:
                link.close()
            link = self._links[invoker_id] = _Link(invoker.socket)
        if self._released:
            return Miss.DECLINED
        try:
            answer = await link.call(request, timeout_s)
        except (TimeoutError, Released):
            return Miss.PENDING
        except ConnectionError as exc:
            log.info("direct path to %s: %s", invoker_id, exc)
            return Miss.LOST
        if answer.record is None:
            return Miss.DECLINED
        self.ran(request.action.key, answer.record)
        return answer.record

