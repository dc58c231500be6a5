"""The neighbour: another tenant's action invoked back to back, in a process of its own, while
the hostile tests attack. It appends one line per call to a file, so the tests can compare its
success rate and latency before and during each attack without their own work (parsing a
10 MB record, say) showing up in the neighbour's numbers.

Run as ``python -m tests.hostile.neighbour API_HOST UUID:KEY ACTION OUT_FILE``; each line is
``<monotonic start> <latency ms> <ok 0|1> <container hostname or ->``. CLOCK_MONOTONIC is
system-wide, so the tests' own time.monotonic() marks compare with it.
"""

from __future__ import annotations

import base64
import http.client
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# The neighbour's action: the secret arrives as an `init` parameter, i.e. in its environment.
ACTION_CODE = """
import hashlib, os
def main(args):
    secret = os.environ.get("NEIGHBOUR_SECRET", "")
    return {"ok": True, "host": os.uname().nodename,
            "secret_sha": hashlib.sha256(secret.encode()).hexdigest()[:16]}
"""


@dataclass(frozen=True)
class Sample:
    start: float
    latency_ms: float
    ok: bool
    host: str


@dataclass(frozen=True)
class Health:
    calls: int
    success: float  # fraction of calls that succeeded
    p50_ms: float

    def __str__(self) -> str:
        return f"{self.p50_ms:.2f}ms/{self.success:.0%}"


def health(samples: list[Sample]) -> Health:
    if not samples:
        return Health(0, 0.0, float("inf"))
    return Health(
        calls=len(samples),
        success=sum(s.ok for s in samples) / len(samples),
        p50_ms=statistics.median(s.latency_ms for s in samples),
    )


class SampleReader:
    """Reads the load process's file as it grows: only what is new each time, since the
    tests poll it often and their CPU is the neighbour's too."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.samples: list[Sample] = []
        self._offset = 0

    def read(self) -> list[Sample]:
        with self.path.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
        whole = data[: data.rfind(b"\n") + 1]  # the last line may be half written
        self._offset += len(whole)
        for line in whole.decode().splitlines():
            start, latency, ok, host = line.split()
            self.samples.append(Sample(float(start), float(latency), ok == "1", host))
        return self.samples


def _call(conn: http.client.HTTPConnection, path: str, auth: str) -> tuple[bool, str]:
    conn.request("POST", path, body=b"{}", headers={
        "Authorization": auth, "Content-Type": "application/json"})
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        return False, "-"
    result = json.loads(body)
    return bool(result.get("ok")), str(result.get("host", "-"))


def run(api_host: str, key: str, action: str, out: Path) -> None:
    url = urlsplit(api_host)
    auth = "Basic " + base64.b64encode(key.encode()).decode()
    path = f"/api/v1/namespaces/_/actions/{action}?blocking=true&result=true"
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=70)
    with out.open("a", buffering=1) as log:
        while True:
            start = time.monotonic()
            try:
                ok, host = _call(conn, path, auth)
            except (OSError, http.client.HTTPException, ValueError):
                ok, host = False, "-"
                conn.close()  # reconnects on the next request
            latency_ms = (time.monotonic() - start) * 1000
            log.write(f"{start:.6f} {latency_ms:.3f} {int(ok)} {host}\n")
            if not ok:
                time.sleep(0.01)  # a failing gateway is not to be hammered


if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]))
