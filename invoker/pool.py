"""The container pool as a pure state machine (DESIGN §5, OpenWhisk's ContainerPool, reference
§4.2).

The invoker's async driver feeds the pool events (a job arrived, a container started, a job
finished, a container is gone, time passed) and executes the commands each event returns. The pool
does no I/O and never reads a clock, so every scheduling decision can be replayed in a unit test.

Scheduling, for the job whose turn it is in the buffer (one FIFO per namespace, served in
turns: invoker/fair_buffer.py):
warm (same action_key and namespace) -> prewarmed stem cell (same kind and memory) -> cold start if
memory allows -> evict least-recently-used idle containers and wait for them to go -> wait.

Memory is the capacity unit: every container the pool knows about counts, whatever its state,
until the driver reports it gone.
"""

from __future__ import annotations

import enum
import itertools
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from bus.config import StemCellSpec
from invoker.fair_buffer import FairBuffer


class ContainerState(enum.Enum):
    STARTING = "starting"  # being created (stem cell or cold start)
    PREWARMED = "prewarmed"  # stem cell: generic runtime up, no code yet
    BUSY = "busy"  # running an activation
    IDLE = "idle"  # warm: initialized for one action, free
    REMOVING = "removing"


@dataclass(frozen=True)
class Job:
    activation_id: str
    action_key: str  # identity of (action, version, code); warm reuse only on equality
    namespace: str  # invoking namespace; warm reuse only for the same namespace too
    kind: str  # runtime kind, e.g. "python:3.11"
    memory: int  # MB


@dataclass
class Container:
    """The pool's view of one container."""

    id: str
    kind: str
    memory: int
    state: ContainerState
    action_key: str | None = None
    namespace: str | None = None
    last_used: float = 0.0
    job: Job | None = None  # the job it is running or starting for

    @property
    def is_stem_cell(self) -> bool:
        """A generic container waiting for code: prewarmed, or being started to be prewarmed."""
        return self.state is ContainerState.PREWARMED or (
            self.state is ContainerState.STARTING and self.job is None
        )


@dataclass(frozen=True)
class StartStemCell:
    """Create a prewarmed container; answer with container_started or container_failed_to_start."""

    container_id: str
    kind: str
    memory: int


@dataclass(frozen=True)
class Run:
    """Run a job. warm: the container already holds the action, send /run only. prewarm: a started
    stem cell, send /init then /run. cold: container_id is new, create it, then /init and /run."""

    container_id: str
    job: Job
    start: Literal["warm", "prewarm", "cold"]


@dataclass(frozen=True)
class Remove:
    """Destroy the container; answer with container_removed."""

    container_id: str


Command = StartStemCell | Run | Remove


def _least_recently_used_first(containers: Iterable[Container]) -> list[Container]:
    return sorted(containers, key=lambda c: (c.last_used, c.id))


class ContainerPool:
    def __init__(
        self,
        user_memory: int,
        stem_cells: list[StemCellSpec],
        idle_ttl: float,
        new_id: Callable[[], str],
        stem_cell_reclaim_after: float = 30.0,
    ) -> None:
        self.user_memory = user_memory
        self.idle_ttl = idle_ttl
        self.stem_cell_reclaim_after = stem_cell_reclaim_after
        self.containers: dict[str, Container] = {}
        self._new_id = new_id
        self._buffer = FairBuffer()
        self._draining = False
        # Two specs with the same kind and memory describe the same stem cells: their counts add.
        self._stem_cell_targets: Counter[tuple[str, int]] = Counter()
        for spec in stem_cells:
            self._stem_cell_targets[(spec.kind, spec.memory)] += spec.count

    # ----------------------------------------------------------------------------------- events

    def start(self, now: float) -> list[Command]:
        """Create the configured stem cells (as many as fit)."""
        return self._refill_stem_cells(now)

    def submit(self, job: Job, now: float) -> list[Command]:
        """An activation arrives. It joins its namespace's queue in the buffer; no job overtakes
        the one whose turn it is while that one waits for memory (large jobs are not starved by
        a stream of small ones)."""
        if job.memory > self.user_memory:
            raise ValueError(
                f"job {job.activation_id} needs {job.memory} MB, the pool has {self.user_memory} MB"
            )
        if self._draining:
            raise RuntimeError("the pool is draining and accepts no more jobs")
        self._buffer.append(job)
        return self._serve_buffer_then_refill(now)

    def submit_warm(self, job: Job, now: float) -> Run | None:
        """The direct path: run ``job`` now on an idle warm container, or take nothing. Never
        ahead of buffered jobs (they were here first), never a stem cell or a cold start: those
        go through the initializer, which places by capacity."""
        if self._draining or self._buffer:
            return None
        warm = self._warm_for(job)
        if not warm:
            return None
        return self._assign(max(warm, key=lambda c: (c.last_used, c.id)), job, now, "warm")

    def container_started(self, container_id: str, now: float) -> list[Command]:
        """A stem cell is up (cold starts never report this: their next event is job_finished)."""
        container = self.containers.get(container_id)
        if container is None or not container.is_stem_cell:
            return []
        container.last_used = now
        if self._draining:
            return [self._mark_removing(container)]
        container.state = ContainerState.PREWARMED
        return self._serve_buffer_then_refill(now)

    def container_failed_to_start(self, container_id: str, now: float) -> list[Command]:
        """Creation failed; the driver fails the cold-start job itself, if there was one."""
        self.containers.pop(container_id, None)
        # No stem-cell refill here: if the engine is failing, an immediate retry would loop with
        # the driver as fast as it fails. The next tick (or any other event) refills.
        return self._serve_buffer(now)

    def job_finished(self, container_id: str, now: float, reusable: bool) -> list[Command]:
        """reusable=False (developer or internal error, timeout, OOM): the container is destroyed,
        never reused (DESIGN §4)."""
        container = self.containers.get(container_id)
        if container is None or container.job is None:
            return []
        container.job = None
        container.last_used = now
        commands: list[Command] = []
        if reusable and not self._draining:
            container.state = ContainerState.IDLE
        else:
            commands.append(self._mark_removing(container))
        return commands + self._serve_buffer_then_refill(now)

    def container_removed(self, container_id: str, now: float) -> list[Command]:
        self.containers.pop(container_id, None)
        return self._serve_buffer_then_refill(now)

    def container_lost(self, container_id: str, now: float) -> list[Command]:
        """Died unexpectedly, in any state. For a busy container the driver reports the job's
        failure itself; the pool only forgets the container."""
        if self.containers.pop(container_id, None) is None:
            return []
        return self._serve_buffer_then_refill(now)

    def tick(self, now: float) -> list[Command]:
        """Periodic housekeeping: reap idle containers past their TTL, refill stem cells, serve
        the buffer. After drain() every idle and prewarmed container is removed here."""
        if self._draining:
            return [
                self._mark_removing(c)
                for c in _least_recently_used_first(self.containers.values())
                if c.state in (ContainerState.IDLE, ContainerState.PREWARMED)
            ]
        expired = [
            self._mark_removing(c)
            for c in _least_recently_used_first(self._in_state(ContainerState.IDLE))
            if now - c.last_used >= self.idle_ttl
        ]
        reclaimed = self._reclaim_for_stem_cells(now)
        return expired + reclaimed + self._serve_buffer_then_refill(now)

    def drain(self) -> list[Job]:
        """Shutdown: accept no more jobs and hand back the buffered ones (oldest first).

        The signature leaves no room for commands, so the idle and prewarmed containers are
        removed by the next tick(); from now on finished containers are removed instead of kept
        warm, and stem cells are no longer refilled.
        """
        self._draining = True
        return self._buffer.clear()

    # -------------------------------------------------------------------------------- inventory

    @property
    def used_memory(self) -> int:
        return sum(c.memory for c in self.containers.values())

    @property
    def free_memory(self) -> int:
        return self.user_memory - self.used_memory

    @property
    def busy_count(self) -> int:
        """Containers running an activation, including cold starts still being created."""
        return sum(1 for c in self.containers.values() if c.job is not None)

    @property
    def work_memory(self) -> int:
        """Memory of the activations held: running ones and buffered ones."""
        running = sum(c.memory for c in self.containers.values() if c.job is not None)
        return running + self._buffer.memory

    @property
    def queued_count(self) -> int:
        return len(self._buffer)

    @property
    def queued_jobs(self) -> list[Job]:
        return self._buffer.jobs()

    @property
    def draining(self) -> bool:
        return self._draining

    def state_counts(self) -> dict[str, int]:
        """Containers by state, every state present (0 included)."""
        counts = {state.value: 0 for state in ContainerState}
        for c in self.containers.values():
            counts[c.state.value] += 1
        return counts

    def warm_keys(self) -> list[str]:
        """action_keys of idle warm containers, each once, sorted."""
        return sorted({c.action_key for c in self._in_state(ContainerState.IDLE) if c.action_key})

    def prewarm_counts(self) -> dict[str, int]:
        """Number of PREWARMED stem cells by "kind/memory"; configured specs appear even at 0."""
        counts = {f"{kind}/{memory}": 0 for kind, memory in self._stem_cell_targets}
        for c in self._in_state(ContainerState.PREWARMED):
            key = f"{c.kind}/{c.memory}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    # ------------------------------------------------------------------------------- scheduling

    def _serve_buffer_then_refill(self, now: float) -> list[Command]:
        return self._serve_buffer(now) + self._refill_stem_cells(now)

    def _serve_buffer(self, now: float) -> list[Command]:
        """Start buffered jobs in turn until one has to wait; then make room for it."""
        commands: list[Command] = []
        while (head := self._buffer.head()) is not None:
            placed = self._place(head, now)
            if placed is None:
                commands += self._make_room(head)
                break
            self._buffer.pop_head()
            commands.append(placed)
        return commands

    def _warm_for(self, job: Job) -> list[Container]:
        # action_key should already imply kind and memory; comparing them too means a key that
        # forgot the limits can never run a job under another job's memory limit.
        return [
            c
            for c in self._in_state(ContainerState.IDLE)
            if (c.action_key, c.namespace, c.kind, c.memory)
            == (job.action_key, job.namespace, job.kind, job.memory)
        ]

    def _place(self, job: Job, now: float) -> Run | None:
        """Rules 1-3: warm, then prewarmed, then cold. None when the job has to wait."""
        warm = self._warm_for(job)
        if warm:
            return self._assign(max(warm, key=lambda c: (c.last_used, c.id)), job, now, "warm")

        stem_cells = [
            c
            for c in self._in_state(ContainerState.PREWARMED)
            if c.kind == job.kind and c.memory == job.memory
        ]
        if stem_cells:
            # The longest-waiting stem cell first, like OpenWhisk's soonest-expiring first.
            return self._assign(_least_recently_used_first(stem_cells)[0], job, now, "prewarm")

        if job.memory <= self.free_memory:
            container = Container(
                id=self._new_id(), kind=job.kind, memory=job.memory, state=ContainerState.STARTING
            )
            self.containers[container.id] = container
            return self._assign(container, job, now, "cold")
        return None

    def _assign(
        self,
        container: Container,
        job: Job,
        now: float,
        start: Literal["warm", "prewarm", "cold"],
    ) -> Run:
        # A cold container stays STARTING until it finishes: the driver reports no "started"
        # for it, and until then it cannot take other work either way.
        if container.state is not ContainerState.STARTING:
            container.state = ContainerState.BUSY
        container.job = job
        container.action_key = job.action_key
        container.namespace = job.namespace
        container.last_used = now
        return Run(container_id=container.id, job=job, start=start)

    def _make_room(self, head: Job) -> list[Command]:
        """Rule 4: remove least-recently-used idle containers, just enough for the job whose
        turn it is once they are gone, and for the jobs after it that will need a cold start
        too, as far as idle containers reach. Their removals then overlap instead of following
        one another (each waits for its container to go): a full pool of distinct actions
        replaces as many containers at once as it has idle. Memory of containers already being
        removed counts as on its way, so jobs that wait for earlier removals do not trigger new
        ones; idle containers a buffered job will find warm are kept for it."""
        shortfall = head.memory - self.free_memory - self._memory_in(ContainerState.REMOVING)
        idle = _least_recently_used_first(self._in_state(ContainerState.IDLE))
        evictable = sum(c.memory for c in idle)
        if shortfall > evictable:
            # Busy containers will become idle (and evictable) when they finish, so waiting is
            # right, unless stem cells hold so much memory that the job could never fit beside
            # them. Nothing is removed for the jobs behind it: they wait for it anyway.
            return self._sacrifice_stem_cells_for(head)
        kept: set[str] = set()
        upcoming = self._buffer.upcoming()
        next(upcoming)  # the head
        for job in itertools.islice(upcoming, len(self.containers)):
            reusable = self._reusable_for(job, kept)
            if reusable is None:
                if shortfall + job.memory > evictable:
                    break
                shortfall += job.memory
            elif reusable.state is ContainerState.IDLE:
                if evictable - reusable.memory < shortfall:
                    break
                evictable -= reusable.memory
                kept.add(reusable.id)
            else:
                kept.add(reusable.id)  # a stem cell: no room needed
        if shortfall <= 0:
            return []
        return self._remove_until_freed([c for c in idle if c.id not in kept], shortfall)

    def _reusable_for(self, job: Job, taken: set[str]) -> Container | None:
        """An idle warm container or a prewarmed stem cell the job could have, outside
        ``taken``."""
        for container in self._warm_for(job):
            if container.id not in taken:
                return container
        for container in self._in_state(ContainerState.PREWARMED):
            if (container.kind, container.memory) == (job.kind, job.memory) \
                    and container.id not in taken:
                return container
        return None

    def _sacrifice_stem_cells_for(self, job: Job) -> list[Command]:
        """Stem cells are never evicted to speed a job up, only to keep one from waiting forever:
        when even a pool of nothing but stem cells could not fit it. Refill waits for an empty
        buffer, so they come back once the job has started."""
        stem_cell_memory = sum(c.memory for c in self.containers.values() if c.is_stem_cell)
        deficit = job.memory - (self.user_memory - stem_cell_memory)
        if deficit <= 0:
            return []
        prewarmed = _least_recently_used_first(self._in_state(ContainerState.PREWARMED))
        # Stem cells still starting are left alone; once started they are reconsidered.
        return self._remove_until_freed(prewarmed, deficit)

    def _remove_until_freed(self, candidates: list[Container], memory: int) -> list[Command]:
        commands: list[Command] = []
        freed = 0
        for container in candidates:
            if freed >= memory:
                break
            commands.append(self._mark_removing(container))
            freed += container.memory
        return commands

    def _reclaim_for_stem_cells(self, now: float) -> list[Command]:
        """Stem cells outrank warm containers nobody has used for `stem_cell_reclaim_after`
        seconds: with them a new action starts in ~20 ms instead of ~400 ms, while the idle
        action's next call costs at most a stem-cell start. Only on the periodic tick, and
        only stale containers, so warm traffic is never churned for it."""
        if self._draining or self._buffer:
            return []
        have = Counter((c.kind, c.memory) for c in self.containers.values() if c.is_stem_cell)
        missing = sum(
            memory * (wanted - have[(kind, memory)])
            for (kind, memory), wanted in self._stem_cell_targets.items()
            if wanted > have[(kind, memory)]
        )
        shortfall = missing - self.free_memory - self._memory_in(ContainerState.REMOVING)
        if shortfall <= 0:
            return []
        stale = [
            c for c in _least_recently_used_first(self._in_state(ContainerState.IDLE))
            if now - c.last_used >= self.stem_cell_reclaim_after
        ]
        return self._remove_until_freed(stale, shortfall)

    def _refill_stem_cells(self, now: float) -> list[Command]:
        """Keep `count` stem cells per spec while memory allows. Buffered jobs come first: while
        one waits, all memory that frees up is kept for it."""
        if self._draining or self._buffer:
            return []
        have = Counter((c.kind, c.memory) for c in self.containers.values() if c.is_stem_cell)
        commands: list[Command] = []
        for (kind, memory), wanted in self._stem_cell_targets.items():
            for _ in range(wanted - have[(kind, memory)]):
                if memory > self.free_memory:
                    break
                container = Container(
                    id=self._new_id(),
                    kind=kind,
                    memory=memory,
                    state=ContainerState.STARTING,
                    last_used=now,
                )
                self.containers[container.id] = container
                commands.append(StartStemCell(container_id=container.id, kind=kind, memory=memory))
        return commands

    # ---------------------------------------------------------------------------------- helpers

    def _mark_removing(self, container: Container) -> Remove:
        container.state = ContainerState.REMOVING
        container.job = None
        return Remove(container_id=container.id)

    def _in_state(self, state: ContainerState) -> list[Container]:
        return [c for c in self.containers.values() if c.state is state]

    def _memory_in(self, state: ContainerState) -> int:
        return sum(c.memory for c in self._in_state(state))
