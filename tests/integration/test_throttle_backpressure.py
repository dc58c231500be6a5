"""A throttle is back-pressure for producers that can wait: 200 messages through a queue feed
at 60 invocations/minute and 100 events published to ``ft.events`` at 30/minute all run, over
some minutes, with nothing in a dead-letter queue, no throttled try counted as an attempt and
no record saying "Too many requests" (the scenario: tests/early_scenarios.py, started when the
session starts since its minute windows cannot be hurried)."""

from __future__ import annotations

import asyncio

import pytest

SCENARIO_LIMIT_S = 8 * 60  # from the session's start; it needs about 3-4 minutes


@pytest.mark.starts_early("throttled_runs")
async def test_a_throttle_slows_feeds_and_events_down_and_loses_nothing(
    throttled_runs: asyncio.Task[None],
) -> None:
    await asyncio.wait_for(asyncio.shield(throttled_runs), SCENARIO_LIMIT_S)
