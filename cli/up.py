"""`ft up`: everything on this machine in one command. Starts RabbitMQ, Redis and the Docker
engine if needed, builds the runtime images if missing, runs gateway, initializer and
invoker(s) as supervised child processes (one that dies is restarted, cli/supervisor.py),
and stops them all cleanly on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bus.config import get_settings
from cli.cluster import ClusterError, LocalCluster
from cli.progress import Progress
from cli.services import ServiceError, ensure_all
from cli.supervisor import LogFollower, Supervisor

DEMO_CODE = '''\
import platform

def main(args):
    name = args.get("name", "stranger")
    print(f"greeting {name} from Python {platform.python_version()}")
    return {"greeting": f"Hello {name}!"}
'''


def _request(method: str, url: str, auth: str, body: object | None = None) -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=70) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def _run_demo(api_host: str, auth: str) -> None:
    base = f"{api_host}/api/v1/namespaces/_/actions/hello"
    status, body = _request("PUT", f"{base}?overwrite=true", auth,
                            {"exec": {"kind": "python:3.11", "code": DEMO_CODE}})
    if status != 200:
        raise ClusterError(f"could not create the demo action: {status} {body}")
    print("ok: created action hello")
    status, body = _request("POST", f"{base}?blocking=true", auth, {"name": "Funtainer"})
    if status != 200 or not isinstance(body, dict):
        raise ClusterError(f"demo invoke failed: {status} {body}")
    init = next((a["value"] for a in body["annotations"] if a["key"] == "initTime"), None)
    timing = f"{body['duration']} ms" + (f", of which init {init} ms" if init is not None else "")
    print(f"ok: invoked /_/hello with id {body['activationId']} ({timing})")
    print(json.dumps(body["response"]["result"], indent=4))
    for line in body.get("logs", []):
        print(f"   log: {line}")


def _write_wskprops(api_host: str, auth: str) -> None:
    path = Path(os.environ.get("WSK_CONFIG_FILE", Path.home() / ".wskprops"))
    if not path.exists():
        path.write_text(f"APIHOST={api_host}\nAUTH={auth}\n")
        path.chmod(0o600)
        print(f"ok: wrote {path}")


def invoker_ids(base: str, count: int) -> list[str]:
    """One invoker keeps its configured id; N invokers are numbered from it (invoker0..)."""
    if count <= 1:
        return [base]
    stem = base.rstrip("0123456789") or "invoker"
    return [f"{stem}{i}" for i in range(count)]


def _say(message: str) -> None:
    print(f"ft up: {message}", flush=True)


def main(args: argparse.Namespace) -> int:
    settings = get_settings()
    # The first start installs services and builds images for minutes: show how far it is.
    progress = Progress()
    try:
        ensure_all(lambda msg: progress.line(f".. {msg}"))
        from runtimes.build import BuildError, build_images

        build_images(prefix=settings.image_prefix, progress=progress)
    except (ServiceError, BuildError, subprocess.CalledProcessError) as exc:
        progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    progress.close()
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    log_dir = Path(settings.work_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    # The children inherit this process's FT_* environment: one configuration for all. They
    # get process groups of their own: a Ctrl-C reaches only us, and we stop them in order.
    env = {"FT_API_HOST": settings.api_host}
    if args.backend:
        env["FT_CONTAINER_BACKEND"] = args.backend
    cluster = LocalCluster(env=env,
                           invoker_ids=invoker_ids(settings.invoker_id, args.invokers),
                           log_dir=log_dir, own_process_groups=True,
                           metrics_base_port=settings.metrics_port or DEFAULT_METRICS_PORT)
    supervisor = Supervisor(cluster, say=_say)
    follower = LogFollower(cluster, progress.line)

    def supervise() -> None:
        supervisor.poll()
        if not args.quiet:
            follower.poll()

    try:
        for log in log_dir.glob("*.log"):
            log.replace(log.with_suffix(".log.1"))  # the previous run's, kept once
        cluster.start()
        _say(f"started {', '.join(cluster.procs)} (logs in {log_dir})")
        if not _wait_for_gateway(cluster.api_host, supervise, lambda: stopping, progress):
            if stopping:
                return 0
            print(f"error: the gateway did not answer within {GATEWAY_START_S} s",
                  file=sys.stderr)
            return 1
        auth = f"{settings.guest_uuid}:{settings.guest_key}"
        print(f"ok: Funtainer is up\n   API host  {settings.api_host}\n   guest key {auth}")
        print(f"   dashboard {settings.api_host}/dashboard#key={auth}")
        metrics = ", ".join(f"{name} :{port}" for name, port in cluster.metrics_ports.items())
        print(f"   metrics   {settings.api_host}/metrics (an administrator's key); {metrics}")
        _write_wskprops(settings.api_host, auth)
        if getattr(args, "demo", False):
            _run_demo(settings.api_host, auth)
        print("Press Ctrl-C to stop.", flush=True)
        while not stopping:
            supervise()
            time.sleep(SUPERVISE_EVERY_S)
        return 0
    except (ClusterError, ServiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        print("stopping ...", flush=True)
        cluster.stop()
        if not args.quiet:
            follower.poll()


GATEWAY_START_S = 60
# The initializer's metrics port, the invokers' the next ones (FT_METRICS_PORT overrides).
DEFAULT_METRICS_PORT = 9100
SUPERVISE_EVERY_S = 0.25


def _wait_for_gateway(api_host: str, supervise: Callable[[], None],
                      stopping: Callable[[], bool], progress: Progress) -> bool:
    """Until the gateway answers, supervising meanwhile (a child that dies while the
    platform starts is restarted like any other)."""
    deadline = time.monotonic() + GATEWAY_START_S
    try:
        while time.monotonic() < deadline and not stopping():
            progress.update("waiting for the gateway", 0, 1)
            supervise()
            try:
                with urllib.request.urlopen(f"{api_host}/api/v1", timeout=1):
                    progress.update("waiting for the gateway", 1, 1)
                    return True
            except OSError:
                time.sleep(0.1)
        return False
    finally:
        progress.close()
