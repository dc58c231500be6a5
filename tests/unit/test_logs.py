"""Log collection from the proxy's per-activation files."""

from __future__ import annotations

from pathlib import Path

from invoker.logs import collect, format_line


def test_format_line_is_openwhisk_shaped() -> None:
    line = format_line("stdout", "hi", at_ns=1_718_000_000_123_456_789)
    assert line == "2024-06-10T06:13:20.123456789Z stdout: hi"
    assert line[30:] == " stdout: hi"


async def test_collect_reads_and_removes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text(format_line("stdout", "one") + "\n" + format_line("stderr", "two") + "\n")
    lines = await collect(path, 10, expect_file=True)
    assert [line[31:] for line in lines] == ["stdout: one", "stderr: two"]
    assert not path.exists()


async def test_collect_truncates_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.log"
    path.write_text((format_line("stdout", "x" * 1000) + "\n") * 2000)  # ~2 MB
    lines = await collect(path, 1, expect_file=True)
    assert lines[-1].endswith(
        "stderr: Logs were truncated because the total bytes size exceeds the limit of "
        "1048576 bytes.")
    assert sum(len(line) + 1 for line in lines[:-1]) <= 1024 * 1024


async def test_missing_file_after_a_crash_says_so(tmp_path: Path) -> None:
    lines = await collect(tmp_path / "none.log", 10, expect_file=False)
    assert len(lines) == 1 and "Log data might be missing." in lines[0]


async def test_zero_log_limit_collects_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_text(format_line("stdout", "one") + "\n")
    assert await collect(path, 0, expect_file=True) == []
    assert not path.exists()
