"""What an action can plant where the invoker collects its logs, without a cluster: the
proxy directory is writable from inside the container, and the invoker reads it on the host."""

from __future__ import annotations

import os
from pathlib import Path

from invoker.logs import collect, format_line
from invoker.outcome import LOGS_TRUNCATED

MB = 1024 * 1024


def _logs_dir(tmp_path: Path) -> Path:
    logs = tmp_path / "io" / "logs"
    logs.mkdir(parents=True)
    return logs


async def test_a_symlink_to_a_host_file_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "host-only.txt"
    secret.write_text("host secret\n")
    planted = _logs_dir(tmp_path) / "a.log"
    planted.symlink_to(secret)
    assert await collect(planted, 10, expect_file=True) == []
    assert not planted.is_symlink() and secret.read_text() == "host secret\n"


async def test_a_symlinked_log_directory_is_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.log").write_text(format_line("stdout", "not the action's") + "\n")
    (tmp_path / "io").mkdir()
    (tmp_path / "io" / "logs").symlink_to(elsewhere)
    assert await collect(tmp_path / "io" / "logs" / "a.log", 10, expect_file=True) == []
    assert (elsewhere / "a.log").exists()  # and nothing was removed over there


async def test_a_fifo_does_not_hang_the_invoker(tmp_path: Path) -> None:
    planted = _logs_dir(tmp_path) / "a.log"
    os.mkfifo(planted)
    assert await collect(planted, 10, expect_file=True) == []
    assert not planted.exists()


async def test_a_sparse_terabyte_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    planted = _logs_dir(tmp_path) / "a.log"
    with planted.open("wb") as file:
        file.write((format_line("stdout", "x" * 100) + "\n").encode() * 20_000)  # ~2.6 MB
        file.truncate(1 << 40)
    lines = await collect(planted, 1, expect_file=True)
    assert lines[-1].endswith(LOGS_TRUNCATED.format(n=MB))
    assert sum(len(line) + 1 for line in lines[:-1]) <= MB
    assert all(line.endswith("x" * 100) for line in lines[:-1])
    assert not planted.exists()
