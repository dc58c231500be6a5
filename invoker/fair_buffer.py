"""The pool's buffer of jobs waiting for a container: one FIFO per invoking namespace, served in
turns. A namespace that floods an invoker then delays another namespace's next job by one job
of its own, not by its whole backlog (fair queuing, by job count: memory sizes are not
weighed).

Two rules keep it from starving anything: within a namespace jobs keep their order, and the job
whose turn it is keeps the turn until it starts, however long it waits for memory, so nothing
overtakes a large job that waits for room (the pool stops serving while it waits).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from invoker.pool import Job


class FairBuffer:
    def __init__(self) -> None:
        # The dict's order is the rotation: the first namespace has the turn. A namespace
        # whose queue empties leaves it.
        self._queues: dict[str, deque[tuple[int, Job]]] = {}
        self._arrivals = itertools.count()

    def __bool__(self) -> bool:
        return bool(self._queues)

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    @property
    def memory(self) -> int:
        """MB the buffered jobs will need."""
        return sum(job.memory for queue in self._queues.values() for _, job in queue)

    def append(self, job: Job) -> None:
        # A namespace with nothing buffered joins the rotation at its end.
        self._queues.setdefault(job.namespace, deque()).append((next(self._arrivals), job))

    def head(self) -> Job | None:
        """The job whose turn it is."""
        for queue in self._queues.values():
            return queue[0][1]
        return None

    def pop_head(self) -> Job:
        """Take the job whose turn it is; its namespace goes to the end of the rotation."""
        namespace, queue = next(iter(self._queues.items()))
        _, job = queue.popleft()
        del self._queues[namespace]
        if queue:
            self._queues[namespace] = queue
        return job

    def upcoming(self) -> Iterator[Job]:
        """Every buffered job in the order of their turns, as things stand: the head, then
        each namespace's next job in rotation."""
        queues = list(self._queues.values())
        for depth in itertools.count():
            row = [queue[depth][1] for queue in queues if depth < len(queue)]
            if not row:
                return
            yield from row

    def jobs(self) -> list[Job]:
        """Every buffered job, oldest first."""
        return [job for _, job in sorted(
            (entry for queue in self._queues.values() for entry in queue),
            key=lambda entry: entry[0])]

    def clear(self) -> list[Job]:
        """Empty the buffer; what it held, oldest first."""
        jobs = self.jobs()
        self._queues.clear()
        return jobs
