"""How much each measurement does, in the default run and in the smoke run (a minute at most,
for the test command: it proves every section runs, its numbers mean little)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Sizes:
    floor_round_trips: int = 2000  # aio-pika, Redis, unix-socket HTTP, aiohttp server 1 conn
    server_requests_per_conn: int = 2000  # aiohttp server with 16 connections
    container_starts: int = 5  # raw docker create+start+ready
    pauses: int = 10
    sandboxes: int = 10
    celery_latency: int = 1000
    celery_tasks: int = 20_000
    # Celery and the platform take turns: latency in this many, throughput in that many (each
    # turn a share of the calls above and of `sequential` / `async_invokes` below).
    latency_turns: int = 5
    throughput_turns: int = 2
    sequential: int = 500
    concurrent: int = 2000
    callers: int = 16
    async_invokes: int = 5000
    in_flight: int = 32
    # Metrics on and off on twin clusters: a few percent, which this machine's run-to-run
    # noise (10-20 % between bursts) hides unless both sides take many turns.
    metrics_turns: int = 8
    metrics_invokes: int = 2000  # per turn and side
    first_invokes: int = 5  # stem-cell starts, and cold starts
    many_actions: int = 100
    many_invokes: int = 2000  # per side of "1 vs many actions", pool with room
    no_room_invokes: int = 500  # the same without room: every invoke may start a container
    # Room for every container the run keeps (100 actions of 128 MB, the callers' and the
    # async run's containers of 256 MB, stem cells): a budget, not memory actually used.
    room_memory_mb: int = 32_768
    # No room: 12 slots of 128 MB for 100 actions; still fits the cold starts (256 MB each).
    no_room_memory_mb: int = 1536
    timeout_s: float = 600


FULL = Sizes()
SMOKE = Sizes(floor_round_trips=50, server_requests_per_conn=20, container_starts=1, pauses=2,
              sandboxes=2, celery_latency=20, celery_tasks=100, latency_turns=2,
              throughput_turns=1, sequential=20, concurrent=32,
              callers=2, async_invokes=100, in_flight=2, metrics_turns=2, metrics_invokes=50,
              first_invokes=1, many_actions=2,
              many_invokes=40, no_room_invokes=20, no_room_memory_mb=512, timeout_s=60)


def with_overrides(sizes: Sizes, **overrides: int | None) -> Sizes:
    return replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
