"""Tenant A tries every route of the gateway on tenant B's entities, activations, packages and
triggers: each must be refused, and refused exactly as if the thing did not exist at all.
Prints ``tries=… denied=… leaked=…`` and, for a few refusals, the median latency of both cases
(printed only: the loopback timings are too noisy to assert on)."""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

import pytest

from bus.broker import Broker
from bus.config import Settings
from bus.store import Store
from gateway.app import build_app
from tests.tenants.conftest import Client, Reply, World
from tests.tenants.probes import (
    Listing,
    Probe,
    PublicRead,
    Try,
    reference_tries,
    routes,
    tries_for_route,
)

# B's names that A may only ever see echoed back from its own request.
B_ENTITY_NAMES = ("b-act", "b-trig", "b-rule", "b-priv", "inner")
TIMING_SAMPLES = 25


def _error_text(reply: Reply) -> Any:
    body = reply.body
    if isinstance(body, dict) and isinstance(body.get("response"), dict):
        return body["response"].get("result")  # a feed action's refusal is its result
    return body.get("error") if isinstance(body, dict) else reply.text


def _answer(reply: Reply, names: tuple[str, ...]) -> tuple[int, str]:
    """Status and error text with the requested names blanked (messages may echo them)."""
    text = str(_error_text(reply))
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(name, "<name>")
    return reply.status, text


def _mentions_b(text: str, world: World, *, published: bool = False) -> list[str]:
    """B's identifiers in ``text``; reading B's published package may show B's namespace and
    that package, never anything private."""
    found = [s for s in (world.b_secret, *world.b_activations) if s in text]
    if not published:
        found += [n for n in (world.b.namespace, *B_ENTITY_NAMES) if n in text]
    else:
        found += [n for n in ("b-priv", "b-act", "b-trig", "b-rule") if n in text]
    return found


async def _run(a: Client, probe: Probe, world: World) -> tuple[bool, bool, str]:
    """(denied, leaked, what happened) for one probe."""
    if isinstance(probe, Try):
        seen = await a.call(probe.method, probe.existing, json_body=probe.body,
                            params=probe.params)
        absent = await a.call(probe.method, probe.missing, json_body=probe.missing_body,
                              params=probe.params)
        denied = seen.status in probe.denied and absent.status in probe.denied
        leaked = _answer(seen, probe.names) != _answer(absent, probe.names)
        return denied, leaked, f"B's: {seen.status} {seen.text[:160]} | none: " \
                               f"{absent.status} {absent.text[:160]}"
    if isinstance(probe, Listing):
        reply = await a.call(probe.method, probe.path)
        exposed = _mentions_b(reply.text, world, published="published" in probe.label)
        return reply.status == 200 and not exposed, bool(exposed), f"{reply.status} {exposed}"
    reply = await a.call(probe.method, probe.path, json_body=probe.body)
    exposed = [world.b_secret] if world.b_secret in reply.text else []
    # A published package is readable: it must work, and still show no secret.
    return reply.status in (200, 202) and not exposed, bool(exposed), f"{reply.status} {exposed}"


async def _b_is_intact(world: World) -> None:
    b = world.b
    ns = "/api/v1/namespaces/_"
    for path in ("actions/b-act", "actions/b-priv/inner", "actions/b-pub/pubact",
                 "packages/b-priv", "packages/b-pub", "triggers/b-trig"):
        doc = await b.ok("GET", f"{ns}/{path}")
        assert doc["version"] == "0.0.1", (path, doc)
    rule = await b.ok("GET", f"{ns}/rules/b-rule")
    assert rule["status"] == "active"
    action = await b.ok("GET", f"{ns}/actions/b-act")
    # The owner is shown its init parameter, as OpenWhisk does.
    assert {"key": "B_SECRET", "value": world.b_secret, "init": True} in action["parameters"]


async def test_no_tenant_reaches_another(
    world: World, settings: Settings, store: Store, broker: Broker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ghost = f"ghost-{uuid.uuid4().hex[:8]}"
    app = build_app(settings, store, broker)  # only its route table is read
    table = routes(app)
    probes: list[Probe] = [p for method, template in table
                           for p in tries_for_route(method, template, world, ghost)]
    probes += reference_tries(world, ghost)
    tries = denied = leaked = 0
    problems = []
    for probe in probes:
        was_denied, was_leaked, what = await _run(world.a, probe, world)
        tries += 1
        denied += was_denied
        leaked += was_leaked
        if not was_denied or was_leaked:
            problems.append(f"{probe.label}: {what}")
    await _b_is_intact(world)
    with capsys.disabled():
        print(f"\ncross-tenant: routes={len(table)} tries={tries} denied={denied} "
              f"leaked={leaked}")
    assert not problems, "\n".join(problems)
    assert tries == denied and leaked == 0
    # Every kind of probe was made: the route table really was walked.
    kinds = {type(p) for p in probes}
    assert kinds == {Try, Listing, PublicRead} and len(table) >= 30


async def _median_ms(client: Client, path: str) -> tuple[float, set[tuple[int, str]]]:
    times, answers = [], set()
    for _ in range(TIMING_SAMPLES):
        start = time.perf_counter()
        reply = await client.call("GET", path)
        times.append((time.perf_counter() - start) * 1000)
        answers.add((reply.status, str(_error_text(reply))))
    return statistics.median(times), answers


async def test_refusal_latency_of_existing_and_missing(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    b = world.b.namespace
    ghost = uuid.uuid4().hex
    cases = {
        "activation of B via _": ("/api/v1/namespaces/_/activations/" + world.b_activations[0],
                                  f"/api/v1/namespaces/_/activations/{ghost}"),
        "B's private package": (f"/api/v1/namespaces/{b}/packages/b-priv",
                                f"/api/v1/namespaces/{b}/packages/{ghost}"),
        "B's private package action": (f"/api/v1/namespaces/{b}/actions/b-priv/inner",
                                       f"/api/v1/namespaces/{b}/actions/{ghost}/inner"),
        "B's action via _": ("/api/v1/namespaces/_/actions/b-act",
                             f"/api/v1/namespaces/_/actions/{ghost}"),
    }
    lines = []
    for label, (existing, missing) in cases.items():
        existing_ms, seen = await _median_ms(world.a, existing)
        missing_ms, absent = await _median_ms(world.a, missing)
        lines.append(f"timing {label}: exists(B) median {existing_ms:.2f} ms, "
                     f"missing median {missing_ms:.2f} ms")
        # Every sample got one and the same refusal, whichever was asked about.
        assert len(seen) == 1 and seen == {(s, t.replace(ghost, "<x>")) for s, t in absent}
        assert next(iter(seen))[0] in (403, 404)
    with capsys.disabled():
        print("\n" + "\n".join(lines))
