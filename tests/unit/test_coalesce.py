"""The group-commit helper: one batch per event-loop turn, later items in the next batch."""

from __future__ import annotations

import asyncio

from bus.coalesce import Coalescer


async def test_items_of_one_turn_go_together_and_later_ones_follow() -> None:
    sent: list[list[int]] = []
    release = asyncio.Event()

    async def send(batch: list[int]) -> None:
        sent.append(batch)
        await release.wait()

    coalescer: Coalescer[int] = Coalescer(send, "numbers")
    for n in range(5):
        coalescer.add(n)
    await asyncio.sleep(0.01)
    assert sent == [[0, 1, 2, 3, 4]]
    coalescer.add(5)  # while the first batch is still being sent
    coalescer.add(6)
    release.set()
    await coalescer.flush()
    assert sent == [[0, 1, 2, 3, 4], [5, 6]]


async def test_a_failed_batch_does_not_stop_the_next() -> None:
    sent: list[list[str]] = []

    async def send(batch: list[str]) -> None:
        if batch == ["bad"]:
            raise ConnectionError("broker away")
        sent.append(batch)

    coalescer: Coalescer[str] = Coalescer(send, "words")
    coalescer.add("bad")
    await coalescer.flush()
    coalescer.add("good")
    await coalescer.flush()
    assert sent == [["good"]]


async def test_submitters_wait_for_their_batch_and_get_its_failure() -> None:
    sent: list[list[str]] = []

    async def send(batch: list[str]) -> None:
        if "bad" in batch:
            raise ConnectionError("refused")
        sent.append(batch)

    coalescer: Coalescer[str] = Coalescer(send, "words", max_batch=2)
    outcomes = await asyncio.gather(*(coalescer.submit(w) for w in ("a", "b", "bad", "c")),
                                    return_exceptions=True)
    assert sent == [["a", "b"]]  # two per batch: ["bad", "c"] failed together
    assert outcomes[:2] == [None, None]
    assert all(isinstance(o, ConnectionError) for o in outcomes[2:])
