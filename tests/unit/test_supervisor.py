"""`ft up`'s supervisor rules, with real (tiny) child processes and a clock the test moves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli.supervisor import LogFollower, RestartPolicy, Supervisor, describe_exit

POLICY = RestartPolicy(first_delay_s=1, max_delay_s=8, stable_after_s=30, loop_exits=3,
                       loop_window_s=60)


class ScriptChildren:
    """Children that run a line of Python each, logging to ``<name>.log``."""

    def __init__(self, log_dir: Path, scripts: dict[str, str]) -> None:
        self.log_dir = log_dir
        self.scripts = scripts
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.starts: dict[str, int] = dict.fromkeys(scripts, 0)
        for name in scripts:
            self.restart(name)

    def restart(self, name: str) -> None:
        with open(self.log_path(name), "ab") as out:
            self.procs[name] = subprocess.Popen([sys.executable, "-c", self.scripts[name]],
                                                stdout=out, stderr=subprocess.STDOUT)
        self.starts[name] += 1

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def wait_all_exited(self, *names: str) -> None:
        for name in names:
            self.procs[name].wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def children(tmp_path: Path):  # type: ignore[no-untyped-def]
    made: list[ScriptChildren] = []

    def make(scripts: dict[str, str]) -> ScriptChildren:
        made.append(ScriptChildren(tmp_path, scripts))
        return made[-1]

    yield make
    for c in made:
        c.stop()


def test_back_off_doubles_up_to_its_cap_and_starts_over_after_a_stable_run() -> None:
    delays = []
    delay = None
    for _ in range(6):
        delay = POLICY.delay_after(delay, ran_s=1)
        delays.append(delay)
    assert delays == [1, 2, 4, 8, 8, 8]
    assert POLICY.delay_after(8, ran_s=31) == 1


def test_an_exited_child_is_restarted_after_its_back_off_and_the_others_are_left_alone(
    children,  # type: ignore[no-untyped-def]
) -> None:
    kids = children({"dies": "import sys; sys.exit(3)",
                     "lives": "import time; time.sleep(60)"})
    kids.wait_all_exited("dies")
    clock, said = Clock(), []
    supervisor = Supervisor(kids, say=said.append, policy=POLICY, clock=clock)
    lives_pid = kids.procs["lives"].pid

    supervisor.poll()
    assert said == ["dies exited with code 3; restarting it in 1 s"]
    assert supervisor.down() == ["dies"]
    clock.now += 0.5
    supervisor.poll()
    assert kids.starts["dies"] == 1  # still backing off
    clock.now += 0.6
    supervisor.poll()
    assert kids.starts["dies"] == 2
    assert supervisor.down() == []
    assert kids.procs["lives"].pid == lives_pid and kids.starts["lives"] == 1

    # Dying again soon after the restart doubles the wait.
    kids.wait_all_exited("dies")
    clock.now += 1
    supervisor.poll()
    assert said[-1] == "dies exited with code 3; restarting it in 2 s"


def test_a_crash_loop_is_reported_once_with_the_end_of_the_childs_log(
    children,  # type: ignore[no-untyped-def]
) -> None:
    kids = children({"broken": "print('cannot reach Redis'); raise SystemExit(1)"})
    clock, said = Clock(), []
    supervisor = Supervisor(kids, say=said.append, policy=POLICY, clock=clock)
    for _ in range(5):
        kids.wait_all_exited("broken")
        supervisor.poll()  # notices the exit
        clock.now += 10
        supervisor.poll()  # restarts it
    reports = [line for line in said if "crash-looping" in line]
    assert len(reports) == 1
    assert reports[0].startswith("broken is crash-looping (3 exits in 60 s)")
    tail = said[said.index(reports[0]) + 1]
    assert tail == "   broken | cannot reach Redis"
    assert kids.starts["broken"] == 6  # still retried, at the capped back-off


def test_exit_codes_name_their_signal() -> None:
    assert describe_exit(-9) == "code -9 (SIGKILL)"
    assert describe_exit(2) == "code 2"


def test_the_follower_prefixes_each_line_and_keeps_partial_lines_for_later(
    tmp_path: Path,
) -> None:
    kids = ScriptChildren(tmp_path, {"gateway": "pass", "invoker0": "pass"})
    kids.wait_all_exited("gateway", "invoker0")
    lines: list[str] = []
    follower = LogFollower(kids, lines.append)
    kids.log_path("gateway").write_bytes(b"listening\nhalf a ")
    follower.poll()
    assert lines == ["gateway  | listening"]
    with open(kids.log_path("gateway"), "ab") as f:
        f.write(b"line\n")
    kids.log_path("invoker0").write_bytes(b"ready\n")
    follower.poll()
    assert lines[1:] == ["gateway  | half a line", "invoker0 | ready"]
