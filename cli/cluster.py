"""A cluster of Funtainer processes on this machine: gateway, initializer and N invokers as
child processes sharing one settings environment. Used by `ft up`, the end-to-end tests and
the benchmarks, so all three run the platform the same way."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

COMPONENTS = {
    "gateway": "from gateway.app import run; run()",
    "initializer": "from initializer.service import run; run()",
    "invoker": "from invoker.service import run; run()",
    "burst": "from invoker.remote_pool import run; run()",
}


class ClusterError(RuntimeError):
    pass


@dataclass
class LocalCluster:
    """``env`` holds FT_* settings for every process; invoker ids are added per invoker.

    ``own_process_groups``: the children do not share our process group, so a Ctrl-C in the
    terminal reaches only us and we stop them in order (what `ft up` wants); tests leave them
    in the group, so an interrupted test run takes its children with it."""

    env: dict[str, str]
    invoker_ids: list[str]
    log_dir: Path | None = None  # None: children inherit our stdout/stderr
    own_process_groups: bool = False
    # Metrics ports for the initializer and the invokers (the gateway serves /metrics on its
    # API port): the initializer's this, invoker i's this + 1 + i; 0: any free ports; None:
    # none served.
    metrics_base_port: int | None = None
    metrics_ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # name -> (component, extra environment, launcher): how to start it again.
    specs: dict[str, tuple[str, dict[str, str], list[str]]] = field(default_factory=dict)

    @property
    def api_host(self) -> str:
        return self.env.get("FT_API_HOST", "http://127.0.0.1:3233")

    def start(self) -> None:
        self.spawn("initializer", "initializer", self._metrics_env("initializer", 0))
        for i, invoker_id in enumerate(self.invoker_ids):
            self.spawn(invoker_id, "invoker",
                       {"FT_INVOKER_ID": invoker_id} | self._metrics_env(invoker_id, 1 + i))
        self.spawn("gateway", "gateway")

    def _metrics_env(self, name: str, offset: int) -> dict[str, str]:
        if self.metrics_base_port is None:
            return {}
        port = self.metrics_base_port + offset if self.metrics_base_port else free_port()
        self.metrics_ports[name] = port
        return {"FT_METRICS_PORT": str(port)}

    def spawn(self, name: str, component: str, extra: dict[str, str] | None = None,
              launcher: list[str] | None = None) -> None:
        """Start ``component`` as child ``name`` (its log appended to ``<name>.log``);
        ``launcher`` prefixes its command (``nsenter`` onto a test host, cli/hosts.py)."""
        self.specs[name] = (component, dict(extra or {}), list(launcher or []))
        out: IO[bytes] | None = None
        if self.log_dir is not None:
            out = open(self.log_path(name), "ab")
        try:
            self.procs[name] = subprocess.Popen(
                [*(launcher or []), sys.executable, "-c", COMPONENTS[component]],
                env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env, **(extra or {})},
                stdout=out, stderr=subprocess.STDOUT if out else None,
                process_group=0 if self.own_process_groups else None,
            )
        finally:
            if out is not None:
                out.close()  # the child has its own copy of the descriptor

    def restart(self, name: str) -> None:
        """Start child ``name`` again as it was first started (after it exited)."""
        component, extra, launcher = self.specs[name]
        self.spawn(name, component, extra, launcher)

    def log_path(self, name: str) -> Path:
        assert self.log_dir is not None
        return self.log_dir / f"{name}.log"

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with code {proc.returncode}")

    def wait_for_gateway(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                with urllib.request.urlopen(f"{self.api_host}/api/v1", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise ClusterError(f"the gateway did not answer within {timeout:.0f} s")

    def stop(self, timeout: float = 40) -> None:
        # The gateway stops taking requests first; invokers drain their work last.
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in time; killing it", file=sys.stderr)
                proc.kill()
                proc.wait()

    def logs(self, tail: int = 4000) -> str:
        if self.log_dir is None:
            return ""
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
            for p in sorted(self.log_dir.glob("*.log"))
        )


UNTHROTTLED = 1_000_000


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (for a gateway of a local cluster)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def settings_env(
    *, amqp_url: str, redis_url: str, port: int, work_dir: Path, user_memory_mb: int = 2048,
    stem_cells: list[dict[str, object]] | None = None, throttled: bool = False,
) -> dict[str, str]:
    env = {
        "FT_AMQP_URL": amqp_url,
        "FT_REDIS_URL": redis_url,
        "FT_GATEWAY_PORT": str(port),
        "FT_API_HOST": f"http://127.0.0.1:{port}",
        "FT_WORK_DIR": str(work_dir),
        "FT_USER_MEMORY_MB": str(user_memory_mb),
    }
    if not throttled:
        # Test suites and benchmarks drive far more than 60 invocations a minute from one
        # namespace; OpenWhisk's throttles would turn them into 429s. They are tested alone.
        env |= {"FT_INVOCATIONS_PER_MINUTE": str(UNTHROTTLED),
                "FT_CONCURRENT_INVOCATIONS": str(UNTHROTTLED),
                "FT_FIRES_PER_MINUTE": str(UNTHROTTLED)}
    if stem_cells is not None:
        env["FT_STEM_CELLS"] = json.dumps(stem_cells)
    return env
