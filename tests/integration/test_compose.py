"""compose.yaml describes the cluster Docker Compose would run; check it really does."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_is_valid_and_runs_the_whole_cluster() -> None:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail("docker-compose is not installed (scripts/install.sh installs it)")
    # docker-compose v1 prints YAML, the v2 plugin may print JSON: YAML reads both.
    out = subprocess.run([compose, "-f", str(ROOT / "compose.yaml"), "config"],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    services = config["services"]
    expected = {"rabbitmq", "redis", "gateway", "initializer", "invoker-0", "invoker-1"}
    assert expected <= set(services)
    assert "--appendonly" in services["redis"]["command"]
    invokers = ("invoker-0", "invoker-1")
    invoker_ids = {services[s]["environment"]["FT_INVOKER_ID"] for s in invokers}
    assert len(invoker_ids) == 2
    for name in ("invoker-0", "invoker-1"):
        mounts = json.dumps(services[name]["volumes"])
        assert "/var/run/docker.sock" in mounts
