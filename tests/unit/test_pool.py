"""The container pool's scheduling rules, driven by a fake invoker that executes the pool's
commands in memory and reports their outcome back as events."""

from __future__ import annotations

import itertools
import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from bus.config import StemCellSpec
from invoker.pool import (
    Command,
    Container,
    ContainerPool,
    ContainerState,
    Job,
    Remove,
    Run,
    StartStemCell,
)

PY = "python:3.11"
NODE = "nodejs:18"


def make_pool(
    user_memory: int = 1024,
    stem_cells: list[StemCellSpec] | None = None,
    idle_ttl: float = 600.0,
) -> ContainerPool:
    ids = (f"c{n:03d}" for n in itertools.count(1))
    return ContainerPool(
        user_memory=user_memory,
        stem_cells=[] if stem_cells is None else stem_cells,
        idle_ttl=idle_ttl,
        new_id=lambda: next(ids),
    )


_activation_ids = (f"a{n:04d}" for n in itertools.count(1))


def job(
    action: str = "hello",
    namespace: str = "guest",
    kind: str = PY,
    memory: int = 256,
) -> Job:
    return Job(
        activation_id=next(_activation_ids),
        action_key=f"{action}@0.0.1",
        namespace=namespace,
        kind=kind,
        memory=memory,
    )


@dataclass
class FakeDriver:
    """Executes commands instantly: stem cells start and removals complete at once unless told to
    hold them, so a test can look at the pool while they are in flight. Runs stay running until
    the test finishes them."""

    pool: ContainerPool
    now: float = 0.0
    hold_starts: bool = False
    hold_removals: bool = False
    runs: list[Run] = field(default_factory=list)
    running: dict[str, Job] = field(default_factory=dict)  # container id -> job
    pending_starts: list[str] = field(default_factory=list)
    pending_removals: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def execute(self, commands: list[Command]) -> list[Command]:
        """Apply commands and everything they lead to; return them all, in order."""
        executed: list[Command] = []
        queue = deque(commands)
        while queue:
            command = queue.popleft()
            executed.append(command)
            # a pool that answers its own commands with more of them forever is livelocked
            assert len(executed) < 10_000, f"livelock: {executed[-4:]}"
            self.check_invariants()
            match command:
                case StartStemCell(container_id=cid):
                    if self.hold_starts:
                        self.pending_starts.append(cid)
                    else:
                        queue.extend(self.pool.container_started(cid, self.now))
                case Run(container_id=cid, job=run_job, start=start):
                    assert cid not in self.running, f"{cid} given a second job"
                    self.check_fit(self.pool.containers[cid], run_job, start)
                    self.runs.append(command)
                    self.running[cid] = run_job
                case Remove(container_id=cid):
                    assert cid not in self.running, f"{cid} removed while running"
                    self.removed.append(cid)
                    if self.hold_removals:
                        self.pending_removals.append(cid)
                    else:
                        queue.extend(self.pool.container_removed(cid, self.now))
        self.check_invariants()
        return executed

    @staticmethod
    def check_fit(container: Container, run_job: Job, start: str) -> None:
        assert (container.kind, container.memory) == (run_job.kind, run_job.memory)
        assert (container.action_key, container.namespace) == (
            run_job.action_key,
            run_job.namespace,
        )
        expected_state = ContainerState.STARTING if start == "cold" else ContainerState.BUSY
        assert container.state is expected_state

    def check_invariants(self) -> None:
        used = sum(c.memory for c in self.pool.containers.values())
        assert used <= self.pool.user_memory
        assert self.pool.free_memory == self.pool.user_memory - used

    # events the test triggers
    def start(self) -> list[Command]:
        return self.execute(self.pool.start(self.now))

    def submit(self, submitted: Job) -> list[Command]:
        return self.execute(self.pool.submit(submitted, self.now))

    def submit_warm(self, submitted: Job) -> Run | None:
        run = self.pool.submit_warm(submitted, self.now)
        if run is not None:
            self.execute([run])
        return run

    def finish(self, finished: Job, reusable: bool = True) -> list[Command]:
        cid = self.container_of(finished)
        del self.running[cid]
        return self.execute(self.pool.job_finished(cid, self.now, reusable))

    def tick(self) -> list[Command]:
        return self.execute(self.pool.tick(self.now))

    def release_starts(self) -> list[Command]:
        ids, self.pending_starts = self.pending_starts, []
        return [c for cid in ids for c in self.execute(self.pool.container_started(cid, self.now))]

    def release_removals(self) -> list[Command]:
        ids, self.pending_removals = self.pending_removals, []
        return [c for cid in ids for c in self.execute(self.pool.container_removed(cid, self.now))]

    # looking
    def container_of(self, running_job: Job) -> str:
        return next(cid for cid, j in self.running.items() if j == running_job)

    def run_of(self, ran: Job) -> Run:
        return next(r for r in self.runs if r.job == ran)

    def container(self, cid: str) -> Container:
        return self.pool.containers[cid]


T = TypeVar("T")


def of_type(commands: list[Command], kind: type[T]) -> list[T]:
    return [c for c in commands if isinstance(c, kind)]


def states(pool: ContainerPool) -> Counter[ContainerState]:
    return Counter(c.state for c in pool.containers.values())


# ------------------------------------------------------------------------------- stem cells


def test_start_creates_the_configured_stem_cells() -> None:
    pool = make_pool(
        stem_cells=[StemCellSpec(kind=PY, memory=256, count=2), StemCellSpec(kind=NODE, count=1)]
    )
    commands = pool.start(now=0.0)
    assert commands == [
        StartStemCell("c001", PY, 256),
        StartStemCell("c002", PY, 256),
        StartStemCell("c003", NODE, 256),
    ]
    assert states(pool) == {ContainerState.STARTING: 3}
    assert pool.prewarm_counts() == {f"{PY}/256": 0, f"{NODE}/256": 0}

    for command in commands:
        assert pool.container_started(command.container_id, now=1.0) == []
    assert pool.prewarm_counts() == {f"{PY}/256": 2, f"{NODE}/256": 1}
    assert pool.free_memory == 1024 - 3 * 256


def test_start_creates_only_the_stem_cells_that_fit() -> None:
    pool = make_pool(user_memory=512, stem_cells=[StemCellSpec(kind=PY, memory=256, count=3)])
    assert len(pool.start(now=0.0)) == 2
    assert pool.free_memory == 0


def test_first_job_uses_a_stem_cell_and_a_replacement_is_started() -> None:
    driver = FakeDriver(make_pool(stem_cells=[StemCellSpec(kind=PY, memory=256, count=2)]))
    driver.start()
    first = job()
    commands = driver.submit(first)
    assert commands[0] == Run("c001", first, "prewarm")
    assert commands[1] == StartStemCell("c003", PY, 256)
    assert driver.pool.prewarm_counts() == {f"{PY}/256": 2}
    assert driver.container("c001").state is ContainerState.BUSY
    assert driver.pool.busy_count == 1


def test_same_action_after_finish_runs_warm() -> None:
    driver = FakeDriver(make_pool(stem_cells=[StemCellSpec(kind=PY, memory=256, count=1)]))
    driver.start()
    first = job()
    driver.submit(first)
    driver.now = 5.0
    driver.finish(first)
    assert driver.container("c001").state is ContainerState.IDLE
    assert driver.container("c001").last_used == 5.0
    assert driver.pool.warm_keys() == ["hello@0.0.1"]

    second = job()
    assert driver.submit(second) == [Run("c001", second, "warm")]


def test_warm_reuse_picks_the_most_recently_used_container() -> None:
    driver = FakeDriver(make_pool())
    a, b = job(), job()
    driver.submit(a)
    driver.submit(b)
    driver.now = 1.0
    driver.finish(b)
    driver.now = 2.0
    driver.finish(a)
    assert driver.pool.warm_keys() == ["hello@0.0.1"]  # two containers, one key
    third = job()
    assert driver.submit(third) == [Run(driver.run_of(a).container_id, third, "warm")]


def test_direct_path_takes_only_an_idle_warm_container() -> None:
    driver = FakeDriver(make_pool(stem_cells=[StemCellSpec(kind=PY, memory=256, count=1)]))
    driver.start()
    first = job()
    # Only a stem cell: the direct path declines and leaves the pool untouched.
    assert driver.submit_warm(first) is None
    assert states(driver.pool) == Counter({ContainerState.PREWARMED: 1})
    driver.submit(first)
    driver.finish(first)
    second = job()
    run = driver.submit_warm(second)
    assert run == Run(driver.run_of(first).container_id, second, "warm")
    # Busy now, so the next one is declined (not queued behind it, not cold-started).
    assert driver.submit_warm(job()) is None
    assert driver.pool.queued_count == 0
    assert driver.submit_warm(job(namespace="someone-else")) is None


def test_direct_path_never_overtakes_buffered_jobs() -> None:
    driver = FakeDriver(make_pool(user_memory=768))
    first, big = job(), job(action="big", memory=768)
    driver.submit(first)
    driver.finish(first)
    driver.submit(job(action="other"))
    # Waits for the busy container: evicting the idle one alone would not make room.
    driver.submit(big)
    assert driver.pool.queued_count == 1
    assert driver.pool.warm_keys() == ["hello@0.0.1"]
    assert driver.submit_warm(job()) is None


def test_direct_path_declines_while_draining() -> None:
    driver = FakeDriver(make_pool())
    first = job()
    driver.submit(first)
    driver.finish(first)
    driver.pool.drain()
    assert driver.submit_warm(job()) is None


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(dict(namespace="someone-else"), id="other-namespace"),
        pytest.param(dict(action="goodbye"), id="other-action"),
        pytest.param(dict(memory=512), id="same-key-other-memory"),
    ],
)
def test_warm_container_is_never_reused_for_another_namespace_or_action(
    other: dict[str, Any],
) -> None:
    driver = FakeDriver(make_pool())
    first = job()
    driver.submit(first)
    driver.finish(first)
    stranger = job(**other)
    commands = driver.submit(stranger)
    assert of_type(commands, Run) == [Run("c002", stranger, "cold")]
    assert driver.container("c001").state is ContainerState.IDLE


def test_different_memory_skips_the_stem_cell_and_starts_cold() -> None:
    driver = FakeDriver(make_pool(stem_cells=[StemCellSpec(kind=PY, memory=256, count=1)]))
    driver.start()
    big = job(memory=512)
    assert driver.submit(big) == [Run("c002", big, "cold")]
    assert driver.container("c002").state is ContainerState.STARTING
    assert driver.container("c001").state is ContainerState.PREWARMED
    # a cold start reports no "started": its next event is the job finishing
    driver.finish(big)
    assert driver.container("c002").state is ContainerState.IDLE


def test_different_kind_skips_the_stem_cell_and_starts_cold() -> None:
    driver = FakeDriver(make_pool(stem_cells=[StemCellSpec(kind=PY, memory=256, count=1)]))
    driver.start()
    node = job(kind=NODE)
    assert of_type(driver.submit(node), Run) == [Run("c002", node, "cold")]


# ------------------------------------------------------------------------ capacity and buffer


def test_full_pool_buffers_jobs_and_serves_them_in_order() -> None:
    driver = FakeDriver(make_pool(user_memory=512))
    running = [job(action="a"), job(action="b")]
    for j in running:
        driver.submit(j)
    waiting = [job(action="c"), job(action="d"), job(action="e")]
    for j in waiting:
        assert driver.submit(j) == []
    assert driver.pool.queued_count == 3
    assert driver.pool.queued_jobs == waiting

    driver.finish(running[0])  # its idle container is evicted for "c"
    assert driver.pool.queued_jobs == waiting[1:]
    assert [r.job for r in driver.runs] == [*running, waiting[0]]

    driver.finish(running[1])
    driver.finish(waiting[0])
    assert [r.job for r in driver.runs] == [*running, *waiting]
    assert driver.pool.queued_count == 0


def test_buffered_big_job_is_not_overtaken_by_small_ones() -> None:
    driver = FakeDriver(make_pool(user_memory=512))
    small_running = job(action="small", memory=256)
    driver.submit(small_running)
    big = job(action="big", memory=512)
    small_waiting = job(action="small2", memory=128)
    driver.submit(big)
    assert driver.submit(small_waiting) == []  # it would fit, but the big job came first
    driver.finish(small_running)
    assert [r.job for r in driver.runs] == [small_running, big]
    driver.finish(big)
    assert [r.job for r in driver.runs] == [small_running, big, small_waiting]


def test_namespaces_take_turns_in_a_full_pool() -> None:
    driver = FakeDriver(make_pool(user_memory=256))
    first = job(action="a", namespace="flood")
    driver.submit(first)
    flood = [job(action=f"f{i}", namespace="flood") for i in range(4)]
    for j in flood:
        driver.submit(j)
    late = [job(action="q", namespace="quiet"), job(action="r", namespace="rare")]
    for j in late:
        driver.submit(j)
    assert driver.pool.queued_jobs == [*flood, *late]  # oldest first, whatever the turns

    # Each finish frees the one slot for the next job in turn: flood's head went first, so the
    # others each get theirs before flood's second job, however many flood has queued.
    for ran in [first, flood[0], late[0], late[1], flood[1], flood[2]]:
        driver.finish(ran)
    assert [r.job for r in driver.runs] == [first, flood[0], *late, *flood[1:]]
    assert driver.pool.queued_count == 0


def test_the_job_whose_turn_it_is_keeps_it_while_waiting_for_memory() -> None:
    driver = FakeDriver(make_pool(user_memory=512))
    running = [job(action="a", memory=256), job(action="b", memory=256)]
    for j in running:
        driver.submit(j)
    big = job(action="big", namespace="heavy", memory=512)
    small = job(action="small", namespace="light", memory=256)
    driver.submit(big)
    driver.submit(small)
    driver.finish(running[0])  # room for the small job, but it is the big one's turn
    assert [r.job for r in driver.runs] == running
    driver.finish(running[1])
    assert [r.job for r in driver.runs] == [*running, big]
    driver.finish(big)
    assert [r.job for r in driver.runs] == [*running, big, small]


def test_a_job_can_wait_for_a_matching_warm_container() -> None:
    driver = FakeDriver(make_pool(user_memory=256))
    first = job()
    driver.submit(first)
    second = job()
    driver.submit(second)
    assert driver.finish(first) == [Run("c001", second, "warm")]


def test_submit_rejects_a_job_bigger_than_the_pool() -> None:
    pool = make_pool(user_memory=512)
    with pytest.raises(ValueError, match="1024 MB"):
        pool.submit(job(memory=1024), now=0.0)
    assert pool.queued_count == 0


# ----------------------------------------------------------------------------------- eviction


def test_eviction_removes_the_least_recently_used_idle_container_only() -> None:
    pool = make_pool(user_memory=1024, stem_cells=[StemCellSpec(kind=NODE, memory=256, count=1)])
    driver = FakeDriver(pool, hold_removals=True)
    driver.start()  # c001: a node stem cell, never evicted
    older, newer, busy = job(action="old"), job(action="new"), job(action="busy")
    for j in (older, newer, busy):
        driver.submit(j)  # c002, c003, c004: the pool is full
    driver.now = 1.0
    driver.finish(older)
    driver.now = 2.0
    driver.finish(newer)

    incoming = job(action="incoming")
    commands = driver.submit(incoming)
    assert commands == [Remove("c002")]
    assert driver.container("c002").state is ContainerState.REMOVING
    assert driver.pool.free_memory == 0  # counted until really gone
    assert pool.queued_jobs == [incoming]

    assert driver.release_removals() == [Run("c005", incoming, "cold")]
    assert driver.container("c003").state is ContainerState.IDLE
    assert driver.container("c004").job == busy  # busy (a cold start): untouched
    assert driver.container("c001").state is ContainerState.PREWARMED


def test_eviction_removes_no_more_than_needed() -> None:
    driver = FakeDriver(make_pool(user_memory=1024), hold_removals=True)
    smalls = [job(action=f"s{n}", memory=128) for n in range(4)]
    for j in smalls:
        driver.submit(j)
    busy = job(action="busy", memory=512)
    driver.submit(busy)
    for n, j in enumerate(smalls):
        driver.now = float(n)
        driver.finish(j)
    # 512 MB busy, 4 x 128 MB idle: a 256 MB job needs the two least recently used
    commands = driver.submit(job(action="new", memory=256))
    assert commands == [Remove("c001"), Remove("c002")]


def test_no_second_eviction_while_the_first_is_in_flight() -> None:
    driver = FakeDriver(make_pool(user_memory=512), hold_removals=True)
    a, b = job(action="a"), job(action="b")
    driver.submit(a)
    driver.submit(b)
    driver.finish(a)
    driver.finish(b)

    waiting = job(action="c")
    assert driver.submit(waiting) == [Remove("c001")]
    # more events while the removal is in flight must not evict c002 for the same job
    assert driver.tick() == []
    assert driver.container("c002").state is ContainerState.IDLE
    assert driver.release_removals() == [Run("c003", waiting, "cold")]


def test_room_is_made_for_the_jobs_behind_the_head_at_once() -> None:
    """A full pool of idle containers and new actions arriving: their removals overlap, each
    job's room made as it arrives, not once the jobs before it have started (with one
    removal at a time, a full pool of distinct actions ran at one container per removal)."""
    driver = FakeDriver(make_pool(user_memory=768), hold_removals=True)
    a, b, c = job(action="a"), job(action="b"), job(action="c")
    for j in (a, b, c):
        driver.submit(j)
    for n, j in enumerate((a, b, c)):
        driver.now = float(n)
        driver.finish(j)  # c001 .. c003 idle, c001 the least recently used
    x, y = job(action="x"), job(action="y")
    assert driver.submit(x) == [Remove("c001")]
    assert driver.submit(y) == [Remove("c002")]  # with x's removal still in flight
    # c003 is kept for the job that will find it warm, so z has no room to be made yet
    again = job(action="c")
    assert driver.submit(again) == []
    z = job(action="z")
    assert driver.submit(z) == []
    assert driver.container("c003").state is ContainerState.IDLE
    assert driver.release_removals() == [
        Run("c004", x, "cold"), Run("c005", y, "cold"), Run("c003", again, "warm")]
    assert driver.pool.queued_jobs == [z]


def test_no_eviction_when_idle_containers_cannot_cover_the_job() -> None:
    driver = FakeDriver(make_pool(user_memory=768))
    idle, busy = job(action="idle"), job(action="busy", memory=512)
    driver.submit(idle)
    driver.submit(busy)
    driver.finish(idle)
    big = job(action="big", memory=512)
    assert driver.submit(big) == []  # removing the 256 MB idle container would not be enough
    assert driver.container("c001").state is ContainerState.IDLE
    commands = driver.finish(busy)
    assert of_type(commands, Run) == [Run("c003", big, "cold")]


def test_stem_cells_make_way_only_for_a_job_that_could_never_fit_beside_them() -> None:
    pool = make_pool(user_memory=512, stem_cells=[StemCellSpec(kind=PY, memory=256, count=1)])
    driver = FakeDriver(pool)
    driver.start()  # c001
    node = job(kind=NODE, memory=256)
    driver.submit(node)  # c002 cold: the pool is full, and the stem cell stays for that
    assert driver.container("c001").state is ContainerState.PREWARMED

    # 512 MB can never fit beside a 256 MB stem cell in a 512 MB pool
    big = job(kind=NODE, action="big", memory=512)
    assert driver.submit(big) == [Remove("c001")]
    commands = driver.finish(node)
    assert commands == [Remove("c002"), Run("c003", big, "cold")]
    # the stem cell comes back once the big job is done and its memory is free
    commands = driver.finish(big, reusable=False)
    assert of_type(commands, StartStemCell) == [StartStemCell("c004", PY, 256)]
    assert pool.prewarm_counts() == {f"{PY}/256": 1}


# ------------------------------------------------------------------------- container endings


def test_non_reusable_finish_removes_the_container() -> None:
    driver = FakeDriver(make_pool(), hold_removals=True)
    failed = job()
    driver.submit(failed)
    assert driver.finish(failed, reusable=False) == [Remove("c001")]
    assert driver.container("c001").state is ContainerState.REMOVING
    assert driver.pool.warm_keys() == []
    driver.release_removals()
    assert driver.pool.containers == {}
    assert driver.pool.free_memory == 1024
    again = job()
    assert driver.submit(again) == [Run("c002", again, "cold")]


def test_tick_reaps_idle_containers_past_their_ttl() -> None:
    driver = FakeDriver(make_pool(idle_ttl=60.0), hold_removals=True)
    early, late = job(action="early"), job(action="late")
    driver.submit(early)
    driver.submit(late)
    driver.now = 10.0
    driver.finish(early)
    driver.now = 30.0
    driver.finish(late)

    driver.now = 69.9
    assert driver.tick() == []
    driver.now = 70.0
    assert driver.tick() == [Remove("c001")]
    driver.now = 90.0
    assert driver.tick() == [Remove("c002")]


def test_tick_never_reaps_busy_or_prewarmed_containers() -> None:
    driver = FakeDriver(
        make_pool(idle_ttl=1.0, stem_cells=[StemCellSpec(kind=NODE, memory=256, count=1)])
    )
    driver.start()
    driver.submit(job())
    driver.now = 1000.0
    assert driver.tick() == []


def test_stem_cell_replacement_that_did_not_fit_starts_when_memory_frees() -> None:
    pool = make_pool(user_memory=512, stem_cells=[StemCellSpec(kind=PY, memory=256, count=1)])
    driver = FakeDriver(pool)
    driver.start()  # c001
    node, py = job(kind=NODE), job()
    driver.submit(node)  # c002 cold
    assert of_type(driver.submit(py), StartStemCell) == []  # took c001, no room to replace it
    driver.finish(py)
    assert of_type(driver.finish(node, reusable=False), StartStemCell) == [
        StartStemCell("c003", PY, 256)
    ]


def test_refill_waits_while_a_job_is_buffered() -> None:
    pool = make_pool(user_memory=1024, stem_cells=[StemCellSpec(kind=PY, memory=256, count=1)])
    driver = FakeDriver(pool)
    driver.start()  # c001
    busy = job(kind=NODE, action="busy", memory=512)
    driver.submit(busy)  # c002 cold
    taker = job()
    driver.submit(taker)  # takes c001; c003 replaces it and fills the pool
    big = job(kind=NODE, action="big", memory=768)
    assert driver.submit(big) == []
    # 512 MB free now, enough for a stem cell, but kept for the big job
    assert driver.execute(pool.container_lost("c003", driver.now)) == []
    assert of_type(driver.finish(busy), Run) == [Run("c004", big, "cold")]
    assert of_type(driver.finish(taker, reusable=False), StartStemCell) == [
        StartStemCell("c005", PY, 256)
    ]


def test_failed_cold_start_frees_memory_and_serves_the_buffer() -> None:
    driver = FakeDriver(make_pool(user_memory=256))
    doomed, waiting = job(action="doomed"), job(action="waiting")
    driver.submit(doomed)
    driver.submit(waiting)
    del driver.running["c001"]  # the driver fails the doomed job itself
    commands = driver.execute(driver.pool.container_failed_to_start("c001", driver.now))
    assert commands == [Run("c002", waiting, "cold")]


def test_failed_stem_cell_is_forgotten_and_retried_on_the_next_tick() -> None:
    pool = make_pool(user_memory=256, stem_cells=[StemCellSpec(kind=PY, memory=256, count=1)])
    driver = FakeDriver(pool, hold_starts=True)
    driver.start()
    assert pool.free_memory == 0
    assert driver.execute(pool.container_failed_to_start("c001", driver.now)) == []
    assert pool.free_memory == 256
    assert driver.tick() == [StartStemCell("c002", PY, 256)]


def test_lost_busy_container_is_forgotten_and_the_buffer_served() -> None:
    driver = FakeDriver(make_pool(user_memory=256))
    running, waiting = job(action="running"), job(action="waiting")
    driver.submit(running)
    driver.submit(waiting)
    del driver.running["c001"]
    commands = driver.execute(driver.pool.container_lost("c001", driver.now))
    assert commands == [Run("c002", waiting, "cold")]
    # a late report about the lost container changes nothing
    assert driver.pool.job_finished("c001", driver.now, reusable=True) == []


def test_lost_stem_cell_is_replaced() -> None:
    pool = make_pool(stem_cells=[StemCellSpec(kind=PY, memory=256, count=1)])
    driver = FakeDriver(pool)
    driver.start()
    assert driver.execute(pool.container_lost("c001", driver.now)) == [
        StartStemCell("c002", PY, 256)
    ]
    assert pool.prewarm_counts() == {f"{PY}/256": 1}


# -------------------------------------------------------------------------------- drain


def test_drain_returns_buffered_jobs_and_winds_the_pool_down() -> None:
    pool = make_pool(user_memory=768, stem_cells=[StemCellSpec(kind=PY, memory=256, count=1)])
    driver = FakeDriver(pool, hold_removals=True)
    driver.start()  # c001
    idle, busy = job(action="idle"), job(kind=NODE, action="busy")
    driver.submit(idle)  # takes c001; c002 replaces it
    driver.submit(busy)  # c003 cold: the pool is full
    driver.finish(idle)
    waiting = [job(kind=NODE, action="w1"), job(action="w2")]
    assert driver.submit(waiting[0]) == [Remove("c001")]  # evicted for w1
    assert driver.submit(waiting[1]) == []
    assert pool.queued_jobs == waiting

    assert pool.drain() == waiting
    assert pool.queued_count == 0
    with pytest.raises(RuntimeError):
        pool.submit(job(), now=driver.now)

    assert driver.tick() == [Remove("c002")]  # the prewarmed stem cell
    assert driver.finish(busy) == [Remove("c003")]  # finished containers are not kept warm
    assert driver.release_removals() == []  # no stem cell refill while draining
    assert pool.containers == {}
    assert pool.free_memory == 768


def test_stem_cell_that_starts_after_drain_is_removed() -> None:
    pool = make_pool(stem_cells=[StemCellSpec(kind=PY, memory=256, count=1)])
    driver = FakeDriver(pool, hold_starts=True)
    driver.start()
    assert pool.drain() == []
    assert driver.release_starts() == [Remove("c001")]
    assert pool.containers == {}


def test_inventory() -> None:
    pool = make_pool(user_memory=1024, stem_cells=[StemCellSpec(kind=PY, memory=128, count=1)])
    driver = FakeDriver(pool)
    driver.start()
    a1, a2, b = job(action="a"), job(action="a"), job(action="b")
    for j in (a1, a2, b):
        driver.submit(j)
    driver.finish(a1)
    driver.finish(a2)
    assert pool.warm_keys() == ["a@0.0.1"]
    assert pool.busy_count == 1
    assert pool.queued_count == 0
    assert pool.free_memory == 1024 - 128 - 3 * 256
    assert pool.prewarm_counts() == {f"{PY}/128": 1}


# ----------------------------------------------------------------------- randomized sequences


@pytest.mark.parametrize("seed", range(40))
def test_random_event_sequences_keep_memory_bounded_and_run_every_job_once(seed: int) -> None:
    rng = random.Random(seed)
    pool = make_pool(
        user_memory=rng.choice([512, 1024, 2048]),
        stem_cells=[
            StemCellSpec(kind=PY, memory=256, count=rng.randint(0, 2)),
            StemCellSpec(kind=NODE, memory=128, count=rng.randint(0, 2)),
        ],
        idle_ttl=rng.choice([5.0, 50.0]),
    )
    driver = FakeDriver(pool, hold_starts=True, hold_removals=True)
    driver.start()
    submitted: list[Job] = []

    runtime_of_action = {"a": (PY, 256), "b": (NODE, 128), "c": (PY, 512), "d": (NODE, 256)}

    def submit() -> None:
        action = rng.choice(sorted(runtime_of_action))
        kind, memory = runtime_of_action[action]
        if rng.random() < 0.1:  # a key that does not imply the runtime must still be safe
            kind, memory = rng.choice([PY, NODE]), rng.choice([128, 256, 512])
        new = job(action, rng.choice(["guest", "other"]), kind, memory)
        submitted.append(new)
        driver.submit(new)

    def finish() -> None:
        if driver.running:
            cid = rng.choice(sorted(driver.running))
            driver.finish(driver.running[cid], reusable=rng.random() < 0.8)

    def release_one_start() -> None:
        if driver.pending_starts:
            cid = driver.pending_starts.pop(rng.randrange(len(driver.pending_starts)))
            if rng.random() < 0.1:
                driver.execute(pool.container_failed_to_start(cid, driver.now))
            else:
                driver.execute(pool.container_started(cid, driver.now))

    def release_one_removal() -> None:
        if driver.pending_removals:
            cid = driver.pending_removals.pop(rng.randrange(len(driver.pending_removals)))
            driver.execute(pool.container_removed(cid, driver.now))

    def fail_a_cold_start() -> None:
        cold = sorted(
            cid
            for cid, c in pool.containers.items()
            if c.state is ContainerState.STARTING and c.job is not None
        )
        if cold:
            cid = rng.choice(cold)
            del driver.running[cid]
            driver.execute(pool.container_failed_to_start(cid, driver.now))

    def lose_a_container() -> None:
        if pool.containers:
            cid = rng.choice(sorted(pool.containers))
            driver.running.pop(cid, None)
            for pending in (driver.pending_starts, driver.pending_removals):
                if cid in pending:
                    pending.remove(cid)
            driver.execute(pool.container_lost(cid, driver.now))

    def tick() -> None:
        driver.now += rng.choice([0.5, 3.0, 20.0])
        driver.tick()

    events = [submit, finish, release_one_start, release_one_removal, tick, fail_a_cold_start]
    weights = [25, 25, 15, 15, 10, 2]
    for _ in range(400):
        rng.choices(events, weights)[0]()
        if rng.random() < 0.01:
            lose_a_container()

    # let everything in flight complete until the pool is quiet
    for _ in range(1000):
        if not (driver.running or driver.pending_starts or driver.pending_removals):
            break
        for j in list(driver.running.values()):
            driver.finish(j)
        driver.release_starts()
        driver.release_removals()
    else:
        pytest.fail("the pool never became quiet")

    assert pool.queued_count == 0
    ran = Counter(r.job.activation_id for r in driver.runs)
    assert ran == Counter(j.activation_id for j in submitted)


def test_stale_warm_containers_give_way_to_missing_stem_cells() -> None:
    spec = StemCellSpec(kind=PY, memory=256, count=1)
    driver = FakeDriver(make_pool(user_memory=512, stem_cells=[spec]))
    driver.start()
    first, second = job("a"), job("b")
    driver.submit(first)  # takes the stem cell; its replacement fits
    driver.finish(first)
    driver.submit(second)  # takes the replacement; the pool is full of warm containers
    driver.finish(second)
    assert states(driver.pool)[ContainerState.IDLE] == 2
    assert states(driver.pool)[ContainerState.PREWARMED] == 0

    driver.now = 10.0  # idle, but not stale yet: warm containers stay
    assert of_type(driver.tick(), Remove) == []

    driver.now = 31.0
    commands = driver.tick()
    removed = of_type(commands, Remove)
    assert [r.container_id for r in removed] == [driver.runs[0].container_id]  # LRU only
    assert len(of_type(commands, StartStemCell)) == 1
    assert states(driver.pool)[ContainerState.PREWARMED] == 1


def test_recently_used_warm_containers_are_not_reclaimed() -> None:
    spec = StemCellSpec(kind=PY, memory=256, count=1)
    driver = FakeDriver(make_pool(user_memory=256, stem_cells=[spec]))
    driver.start()
    work = job("a")
    driver.submit(work)
    driver.finish(work)
    for second in range(1, 60, 5):  # used again and again: never stale
        driver.now = float(second)
        again = job("a")
        driver.submit(again)
        driver.finish(again)
        assert of_type(driver.tick(), Remove) == []
