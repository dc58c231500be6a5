"""What the bench needs besides the platform: its own virtualenv (Celery, the peer we compare
against, is no dependency of the platform; matplotlib draws the chart; httpx is one of the
HTTP-client floors), bubblewrap for the sandbox floor, and the vhost/Redis-database claims it
shares with the test suites so that parallel sessions never step on each other."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BENCH_VENV = BENCH_DIR / ".venv"
RESULTS = BENCH_DIR / "results"
# Celery 5 with its Redis result backend; the broker side (py-amqp via kombu) comes with it.
BENCH_REQUIREMENTS = ["celery[redis]>=5.3,<6", "matplotlib>=3.7", "httpx>=0.27"]


def bench_python() -> Path:
    return BENCH_VENV / "bin" / "python"


def bench_venv_ready() -> bool:
    python = bench_python()
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import celery, matplotlib, httpx"],
                           capture_output=True)
    return probe.returncode == 0


def ensure_bench_venv(say: Callable[[str], None] = print) -> Path:
    """Create bench/.venv and install the bench-only packages into it (once)."""
    if bench_venv_ready():
        return bench_python()
    say(f"installing {', '.join(BENCH_REQUIREMENTS)} into {BENCH_VENV} (first run only)")
    if not bench_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
    subprocess.run([str(bench_python()), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", *BENCH_REQUIREMENTS], check=True)
    return bench_python()


def bench_env() -> dict[str, str]:
    """Environment for a bench-venv child: our worktree's code on the path, before anything."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


def ensure_bwrap(say: Callable[[str], None] = print) -> str | None:
    """The bwrap binary, installed from Debian if missing and we may; None if unavailable."""
    found = shutil.which("bwrap")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    say("installing bubblewrap (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", "install", "-y", "-q", "bubblewrap"], env=env,
                          capture_output=True)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "bubblewrap"], env=env,
                       capture_output=True)
    return shutil.which("bwrap")
