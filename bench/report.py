"""From raw results to the table: each figure beside its reference (issue 6's table, or the
peer measured in the same run) as measured/reference, and the issue's targets with pass/miss."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Row:
    name: str
    value: float | None
    unit: str  # "ms", "/s" or "MB"
    p99: float | None = None
    reference: float | None = None
    reference_text: str = ""
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.reference:
            return None
        return round(self.value / self.reference, 2)


@dataclass
class Target:
    name: str
    measured: str
    verdict: str  # "pass", "miss" or "n/a"


def _get(tree: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _latency(name: str, found: Any, reference: float | None = None,
             reference_text: str = "", note: str = "") -> Row:
    if not isinstance(found, dict) or "p50_ms" not in found:
        return Row(name, None, "ms", note=_why_missing(found))
    return Row(name, found["p50_ms"], "ms", found.get("p99_ms"), reference,
               reference_text or (f"{reference:g} ms" if reference else ""), note)


def _rate(name: str, found: Any, reference: float | None = None,
          reference_text: str = "") -> Row:
    if not isinstance(found, dict) or "per_s" not in found:
        return Row(name, None, "/s", note=_why_missing(found))
    errors = found.get("errors")
    return Row(name, found["per_s"], "/s", None, reference,
               reference_text or (f"{reference:g} /s" if reference else ""),
               "" if errors is None else f"errors {errors}")


def _breakdown(found: Any) -> str:
    if not isinstance(found, dict) or "wait_mean_ms" not in found:
        return ""
    return (f"means: {found['mean_ms']:.2f} = in {found.get('in_mean_ms', 0):.2f} + bus "
            f"{found['wait_mean_ms']:.2f} + run {found['run_mean_ms']:.2f} + out "
            f"{found.get('out_mean_ms', 0):.2f} ms")


def _why_missing(found: Any) -> str:
    if isinstance(found, dict):
        return str(found.get("skipped") or found.get("error") or "not measured")[:60]
    return "not measured"


def rows_for(results: dict[str, Any]) -> list[Row]:
    f, c, p = results.get("floors", {}), results.get("celery", {}), results.get("platform", {})
    celery_get = _get(c, "delay().get() -P solo", "p50_ms")
    celery_rate = _get(c, "live no-op tasks -P prefork -c 2", "per_s")
    rows = [
        _latency("floor: aio-pika request/reply", f.get("aio-pika request/reply"), 1.0),
        _latency("floor: Redis GET", f.get("Redis GET"), 0.1),
        _latency("floor: unix HTTP, raw asyncio", f.get("unix socket HTTP: raw"), 0.03),
        _latency("floor: unix HTTP, aiohttp", f.get("unix socket HTTP: aiohttp"), 0.16),
        _latency("floor: unix HTTP, httpx", f.get("unix socket HTTP: httpx"), 1.0),
        _latency("floor: aiohttp server, 1 conn", _get(f, "aiohttp server", "1 connection"),
                 0.13),
        _rate("floor: aiohttp server, 16 conns", _get(f, "aiohttp server", "16 connections"),
              13_000, "~13k /s"),
        _latency("floor: docker create+start+ready", f.get("docker create+start+proxy ready"),
                 227.5, "210-245 ms"),
        _latency("floor: docker pause", f.get("docker pause"), 11.5, "10-13 ms"),
        _latency("floor: docker unpause", f.get("docker unpause"), 11.5, "10-13 ms"),
        _latency("floor: bubblewrap until socket", f.get("bubblewrap spawn until answer"), 20),
        _latency("Celery delay().get() -P solo", c.get("delay().get() -P solo"), 1.65),
        _rate("Celery live no-op -P prefork -c 2", c.get("live no-op tasks -P prefork -c 2"),
              860, "~860 /s"),
        _latency("warm blocking invoke, sequential", p.get("warm blocking, sequential"),
                 celery_get, "Celery, this run" if celery_get else "",
                 _breakdown(p.get("warm blocking, sequential"))),
        _latency("warm blocking invoke, 16 callers", p.get("warm blocking, concurrent")),
        _rate("  calls/s at 16 callers", p.get("warm blocking, concurrent")),
        _rate("async invokes until records", p.get("async throughput"), celery_rate,
              "Celery, this run" if celery_rate else ""),
        _rate("  twin cluster, metrics on", _get(p, "metrics cost", "on")),
        _rate("  twin cluster, metrics off", _get(p, "metrics cost", "off"),
              _get(p, "metrics cost", "on", "per_s"), "metrics on, this run"),
        _latency("first invoke on a stem cell", p.get("stem-cell start")),
        _latency("first invoke, cold (no stem cell)", p.get("cold start")),
        _latency("  raw create+ready, beside the cold", _get(p, "cold start", "raw beside"),
                 227.5, "210-245 ms"),
    ]
    for room in ("room", "no room"):
        group = p.get(f"many actions, {room}") or {}
        single = _get(group, "1 action", "per_s")
        rows.append(_rate(f"{room}: async, 1 action", group.get("1 action")))
        count = _get(group, "many actions", "actions") or "many"
        rows.append(_rate(f"{room}: async, {count} actions", group.get("many actions"),
                          single, "1 action" if single else ""))
    sbx = results.get("sandbox", {})
    docker_warm = _get(p, "warm blocking, sequential", "p50_ms")
    bwrap_raw = _get(sbx, "cold start", "raw beside", "p50_ms")
    rows += [
        _latency("sandbox: warm blocking, sequential", sbx.get("warm blocking, sequential"),
                 docker_warm, "docker, this run" if docker_warm else ""),
        _latency("sandbox: first invoke on a stem cell", sbx.get("stem-cell start")),
        _latency("sandbox: first invoke, cold", sbx.get("cold start"), bwrap_raw,
                 "raw bubblewrap" if bwrap_raw else ""),
        _latency("  raw bubblewrap until socket, beside", _get(sbx, "cold start", "raw beside")),
    ]
    group = sbx.get("many actions, no room") or {}
    count = _get(group, "many actions", "actions") or "many"
    rows.append(_rate("sandbox no room: async, 1 action", group.get("1 action")))
    rows.append(_rate(f"sandbox no room: async, {count} actions", group.get("many actions"),
                      _get(p, "many actions, no room", "many actions", "per_s"),
                      "docker, this run"))
    memory = results.get("memory", {})
    for when in ("idle", "under load", "idle after load"):
        for role, mb in (_get(memory, when, "processes_mb") or {}).items():
            rows.append(Row(f"RSS {role}, {when}", mb, "MB"))
        containers = _get(memory, when, "containers") or {}
        if containers.get("count"):
            rows.append(Row(f"per container, {when}", containers["p50_mb"], "MB",
                            note=f"{containers['count']} containers, max "
                                 f"{containers['max_mb']} MB"))
    return rows


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "miss")


def targets_for(results: dict[str, Any]) -> list[Target]:
    c, p, f = results.get("celery", {}), results.get("platform", {}), results.get("floors", {})
    warm = _get(p, "warm blocking, sequential", "p50_ms")
    celery_get = _get(c, "delay().get() -P solo", "p50_ms")
    rate = _get(p, "async throughput", "per_s")
    rate_metered = _get(p, "metrics cost", "on", "per_s")
    rate_unmetered = _get(p, "metrics cost", "off", "per_s")
    celery_rate = _get(c, "live no-op tasks -P prefork -c 2", "per_s")
    stem = _get(p, "stem-cell start", "p50_ms")
    cold = _get(p, "cold start", "p50_ms")
    # The raw starts taken in turns with the cold ones (same load); else the floor's.
    raw = _get(p, "cold start", "raw beside", "p50_ms") or _get(
        f, "docker create+start+proxy ready", "p50_ms")
    one = _get(p, "many actions, room", "1 action", "per_s")
    many = _get(p, "many actions, room", "many actions", "per_s")
    soak = results.get("soak", {}).get("flat")

    def both(a: Any, b: Any) -> bool:
        return a is not None and b is not None and b != 0

    out = [
        Target("warm p50 <= 1.5x Celery delay().get() p50",
               f"{warm / celery_get:.2f}x ({warm} vs {celery_get} ms)"
               if both(warm, celery_get) else "-",
               _verdict(warm / celery_get <= 1.5 if both(warm, celery_get) else None)),
        Target("async throughput >= Celery live throughput",
               f"{rate / celery_rate:.2f}x ({rate} vs {celery_rate} /s)"
               if both(rate, celery_rate) else "-",
               _verdict(rate >= celery_rate if both(rate, celery_rate) else None)),
        Target("metrics cost <= 5% of async throughput",
               f"{1 - rate_metered / rate_unmetered:+.1%} ({rate_metered} on vs "
               f"{rate_unmetered} /s off)" if both(rate_metered, rate_unmetered) else "-",
               _verdict(rate_metered >= 0.95 * rate_unmetered
                        if both(rate_metered, rate_unmetered) else None)),
        Target("stem-cell start adds <= 20 ms over warm",
               f"+{stem - warm:.1f} ms" if both(stem, warm) else "-",
               _verdict(stem - warm <= 20 if both(stem, warm) else None)),
        Target("cold start adds <= 25 ms over raw create+ready",
               f"{cold - raw:+.1f} ms ({cold} vs {raw} ms)" if both(cold, raw) else "-",
               _verdict(cold - raw <= 25 if both(cold, raw) else None)),
        Target("100 actions keep >= 50% of 1-action throughput (room)",
               f"{many / one:.0%}" if both(many, one) else "-",
               _verdict(many / one >= 0.5 if both(many, one) else None)),
        *_sandbox_targets(results.get("sandbox", {}), warm),
        Target("memory flat over 10 minutes",
               results.get("soak", {}).get("summary", "run with --soak 600"),
               _verdict(soak)),
    ]
    return out


def _sandbox_targets(sbx: dict[str, Any], docker_warm: float | None) -> list[Target]:
    """Issue 14's: the sandbox's cold start against 30 ms and the raw bubblewrap floor, its
    warm calls against Docker's, and many distinct actions on a full pool."""
    cold = _get(sbx, "cold start", "p50_ms")
    raw = _get(sbx, "cold start", "raw beside", "p50_ms")
    warm = _get(sbx, "warm blocking, sequential", "p50_ms")
    many = _get(sbx, "many actions, no room", "many actions")
    rate = many.get("per_s") if isinstance(many, dict) else None
    errors = many.get("errors") if isinstance(many, dict) else None
    return [
        Target("sandbox cold start p50 <= 30 ms", f"{cold} ms" if cold is not None else "-",
               _verdict(cold <= 30 if cold is not None else None)),
        Target("sandbox cold start <= raw bubblewrap + 10 ms",
               f"{cold - raw:+.1f} ms ({cold} vs {raw} ms)"
               if cold is not None and raw is not None else "-",
               _verdict(cold - raw <= 10 if cold is not None and raw is not None else None)),
        Target("sandbox warm p50 <= docker warm p50",
               f"{warm} vs {docker_warm} ms" if warm is not None and docker_warm else "-",
               _verdict(warm <= docker_warm if warm is not None and docker_warm else None)),
        Target("sandbox many actions, full pool >= 100 /s, 0 errors",
               f"{rate} /s, {errors} errors" if rate is not None else "-",
               _verdict(rate >= 100 and not errors if rate is not None else None)),
    ]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if value < 1 else \
        f"{value:.1f}"


def render(rows: list[Row], targets: list[Target]) -> str:
    lines = [f"{'measurement':<40} {'p50/value':>10} {'p99':>8} {'unit':<4} "
             f"{'reference':>16} {'ratio':>6}  note"]
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}x"
        lines.append(f"{r.name:<40} {_fmt(r.value):>10} {_fmt(r.p99) if r.p99 else '':>8} "
                     f"{r.unit:<4} {r.reference_text:>16} {ratio:>6}  {r.note}")
    lines += ["", f"{'target':<56} {'measured':<34} verdict"]
    lines += [f"{t.name:<56} {t.measured:<34} {t.verdict}" for t in targets]
    return "\n".join(lines)


def as_json(rows: list[Row], targets: list[Target]) -> dict[str, Any]:
    return {"rows": [asdict(r) | {"ratio": r.ratio} for r in rows],
            "targets": [asdict(t) for t in targets]}
