"""Runtime profiles turn an action's limits into its runtime's settings."""

from __future__ import annotations

from runtimes.profiles import profile_env, threads


def test_node_heap_follows_the_memory_limit() -> None:
    assert profile_env("nodejs:18", 256, 0.5)["NODE_OPTIONS"] == "--max-old-space-size=192"
    assert profile_env("nodejs:18", 512, 0.5)["NODE_OPTIONS"] == "--max-old-space-size=384"


def test_thread_pools_follow_the_cpu_share() -> None:
    assert [threads(c) for c in (0.25, 1.0, 1.5, None)] == [1, 1, 2, 2]
    small, large = profile_env("python:3.11", 256, 0.25), profile_env("python:3.11", 2048, 4)
    assert small["OMP_NUM_THREADS"] == "1" and large["OMP_NUM_THREADS"] == "4"
    assert profile_env("nodejs:18", 2048, 4)["UV_THREADPOOL_SIZE"] == "4"


def test_an_image_of_unknown_runtime_gets_only_the_common_settings() -> None:
    env = profile_env("blackbox:someone/image", 256, 1)
    assert "NODE_OPTIONS" not in env and "MALLOC_ARENA_MAX" not in env
    assert env["OPENBLAS_NUM_THREADS"] == "1"
