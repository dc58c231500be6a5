"""The README's Python examples run as written, in order, as a user runs them: a script, a
``~/.wskprops`` naming the platform and a namespace of its own made with ``ft admin``. Each
``# → text`` comment is a line the script must print, in that order."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

from tests.cluster_fixtures import Cluster

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## From Python"
EXPECTED = re.compile(r"#\s*→\s*(.+?)\s*$")


def python_examples() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    blocks = re.findall(r"```python\n(.*?)```", text[start:end], re.S)
    assert len(blocks) >= 3, "the section lost its examples"
    return "\n".join(blocks)


def expected_lines(script: str) -> list[str]:
    return [m.group(1) for line in script.splitlines() if (m := EXPECTED.search(line))]


def _ft(cluster: Cluster, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "cli.main", *args],
                          env={"FT_REDIS_URL": cluster.settings.redis_url, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_readme_python_examples_run_as_written(docker_cluster: Cluster, tmp_path: Path) -> None:
    script = python_examples()
    expected = expected_lines(script)
    assert len(expected) >= 6
    key = _ft(docker_cluster, "admin", "user", "create", f"readme-{uuid.uuid4().hex[:6]}")
    try:
        props = tmp_path / ".wskprops"
        props.write_text(f"APIHOST={docker_cluster.api_host}\nAUTH={key}\n")
        (tmp_path / "examples.py").write_text(script)
        ran = subprocess.run(
            [sys.executable, "examples.py"], cwd=tmp_path, capture_output=True, text=True,
            timeout=180, check=False,
            env={"WSK_CONFIG_FILE": str(props), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
        assert ran.returncode == 0, ran.stdout + ran.stderr
        printed = ran.stdout.splitlines()
        position = 0
        for line in expected:
            assert line in printed[position:], (line, printed)
            position = printed.index(line, position) + 1
    finally:
        _ft(docker_cluster, "admin", "user", "delete", key.split(":")[0])
