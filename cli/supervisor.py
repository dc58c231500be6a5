"""Keep `ft up`'s children running, as a process supervisor does: a child that exits is
started again after a back-off that doubles while it keeps dying (systemd's ``RestartSec``
with Kubernetes' crash-loop back-off), a crash loop is reported once with the end of the
child's log, and the other children are never touched.

The supervisor only decides; what it supervises is any ``Children`` (a ``LocalCluster`` in
`ft up`), polled from one loop with no threads, so its rules are tested with plain processes.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class Children(Protocol):
    procs: dict[str, subprocess.Popen[bytes]]

    def restart(self, name: str) -> None: ...

    def log_path(self, name: str) -> Path: ...


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    # A child that ran this long before it exited starts over at the first delay.
    stable_after_s: float = 30.0
    # This many exits within the window is a crash loop (reported, and still retried).
    loop_exits: int = 3
    loop_window_s: float = 60.0

    def delay_after(self, previous_delay_s: float | None, ran_s: float) -> float:
        if previous_delay_s is None or ran_s >= self.stable_after_s:
            return self.first_delay_s
        return min(self.max_delay_s, previous_delay_s * 2)


@dataclass
class ChildState:
    started_at: float
    delay_s: float | None = None  # the last restart's back-off; None: never restarted
    restart_at: float | None = None  # set while the child is down
    exits: deque[float] = field(default_factory=deque)
    loop_reported: bool = False


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"code {code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"code {code}"
    return f"code {code}"


def log_tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_bytes()[-64 * 1024:].decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


class Supervisor:
    def __init__(
        self, children: Children, *, say: Callable[[str], None],
        policy: RestartPolicy = RestartPolicy(), clock: Callable[[], float] = time.monotonic,
        tail_lines: int = 20,
    ) -> None:
        self.children = children
        self.say = say
        self.policy = policy
        self.clock = clock
        self.tail_lines = tail_lines
        now = clock()
        self.states = {name: ChildState(started_at=now) for name in children.procs}
        self.restarts: dict[str, int] = dict.fromkeys(children.procs, 0)

    def poll(self) -> None:
        """Notice exited children and start those whose back-off is over."""
        now = self.clock()
        for name, proc in list(self.children.procs.items()):
            state = self.states.setdefault(name, ChildState(started_at=now))
            if state.restart_at is None:
                code = proc.poll()
                if code is not None:
                    self._exited(name, state, code, now)
            elif now >= state.restart_at:
                self._restart(name, state, now)

    def down(self) -> list[str]:
        return [name for name, state in self.states.items() if state.restart_at is not None]

    def _exited(self, name: str, state: ChildState, code: int, now: float) -> None:
        policy = self.policy
        state.delay_s = policy.delay_after(state.delay_s, now - state.started_at)
        state.restart_at = now + state.delay_s
        state.exits.append(now)
        while state.exits and state.exits[0] < now - policy.loop_window_s:
            state.exits.popleft()
        self.say(f"{name} exited with {describe_exit(code)}; restarting it in "
                 f"{state.delay_s:g} s")
        if len(state.exits) >= policy.loop_exits and not state.loop_reported:
            state.loop_reported = True
            tail = log_tail(self.children.log_path(name), self.tail_lines)
            self.say(f"{name} is crash-looping ({len(state.exits)} exits in "
                     f"{policy.loop_window_s:g} s); the others keep running. The end of its "
                     f"log ({self.children.log_path(name)}):")
            for line in tail:
                self.say(f"   {name} | {line}")

    def _restart(self, name: str, state: ChildState, now: float) -> None:
        try:
            self.children.restart(name)
        except OSError as exc:
            # Could not even start it (no memory, no such interpreter): try again later.
            state.delay_s = self.policy.delay_after(state.delay_s, 0)
            state.restart_at = now + state.delay_s
            self.say(f"{name} could not be started ({exc}); trying again in "
                     f"{state.delay_s:g} s")
            return
        self.restarts[name] = self.restarts.get(name, 0) + 1
        state.started_at = now
        state.restart_at = None
        if state.exits and state.exits[-1] < now - self.policy.loop_window_s:
            state.loop_reported = False
        self.say(f"{name} restarted (pid {self.children.procs[name].pid}, restart "
                 f"{self.restarts[name]})")


class LogFollower:
    """Echo what the children append to their logs, each line prefixed with the child's
    name (as foreman and docker compose do). Reads from where it stopped, so a restarted
    child's lines follow its earlier ones."""

    def __init__(self, children: Children, write: Callable[[str], None]) -> None:
        self.children = children
        self.write = write
        self._offsets: dict[str, int] = {}
        self._partial: dict[str, bytes] = {}

    def poll(self) -> None:
        width = max((len(n) for n in self.children.procs), default=0)
        for name in list(self.children.procs):
            path = self.children.log_path(name)
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets.get(name, 0))
                    data = f.read(1024 * 1024)
            except OSError:
                continue
            if not data:
                continue
            self._offsets[name] = self._offsets.get(name, 0) + len(data)
            data = self._partial.pop(name, b"") + data
            *lines, rest = data.split(b"\n")
            if rest:
                self._partial[name] = rest
            for line in lines:
                self.write(f"{name:<{width}} | {line.decode(errors='replace')}")
