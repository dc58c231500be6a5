"""Traces on a running cluster: the caller's W3C traceparent reaches the record, and with
OTEL_EXPORTER_OTLP_ENDPOINT set every process exports its spans over OTLP/HTTP, each the
child of the one before (gateway -> initializer -> invoker -> /init and /run). The collector
here is a small OTLP/HTTP receiver on loopback, decoding what the SDK's exporter sends."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from bus.broker import Broker
from bus.config import Settings
from cli.cluster import LocalCluster, free_port, settings_env
from tests.cluster_fixtures import Cluster, wait_for_stem_cells

ACTIONS = "/api/v1/namespaces/_/actions"
ECHO = "def main(args):\n    return args\n"
TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str


class Collector:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        export = ExportTraceServiceRequest.FromString(await request.read())
        for resource_spans in export.resource_spans:
            service = next(a.value.string_value for a in resource_spans.resource.attributes
                           if a.key == "service.name")
            for scope in resource_spans.scope_spans:
                self.spans += [ReceivedSpan(service, s.name, s.trace_id.hex(), s.span_id.hex(),
                                            s.parent_span_id.hex()) for s in scope.spans]
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def wait_for(self, trace_id: str, names: set[tuple[str, str]],
                       timeout: float = 20) -> dict[tuple[str, str], list[ReceivedSpan]]:
        deadline = time.monotonic() + timeout
        while True:
            found: dict[tuple[str, str], list[ReceivedSpan]] = {}
            for span in self.spans:
                if span.trace_id == trace_id:
                    found.setdefault((span.service, span.name), []).append(span)
            if names <= set(found):
                return found
            assert time.monotonic() < deadline, f"spans of {trace_id}: {sorted(found)}"
            await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
async def traced(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Cluster, Collector]]:
    """A cluster of its own exporting to the collector (gateway, initializer, one invoker)."""
    from tests.conftest import claimed_redis_db, fresh_vhost

    collector = Collector()
    await collector.start()
    with fresh_vhost("ft-traces") as amqp_url, claimed_redis_db() as redis_url:
        processes = LocalCluster(
            env=settings_env(amqp_url=amqp_url, redis_url=redis_url, port=free_port(),
                             work_dir=settings.work_dir, stem_cells=[])
            | {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.port}",
               "OTEL_BSP_SCHEDULE_DELAY": "100"},
            invoker_ids=[f"tr{uuid.uuid4().hex[:6]}"],
            log_dir=tmp_path_factory.mktemp("traced-cluster-logs"),
        )
        processes.start()
        broker = await Broker.connect(amqp_url, name="traced-watch")
        try:  # no stem cells: up once the invoker beats and the gateway answers
            await wait_for_stem_cells(broker, processes.invoker_ids, timeout=60, wanted=0)
            await asyncio.to_thread(processes.wait_for_gateway)
        except BaseException:
            processes.stop()
            raise
        finally:
            await broker.close()
        auth = Settings()
        yield Cluster(processes, f"{auth.guest_uuid}:{auth.guest_key}", auth), collector
        await asyncio.to_thread(processes.stop)
    await collector.close()


async def test_one_trace_from_the_request_to_the_container(
    traced: tuple[Cluster, Collector],
) -> None:
    cluster, collector = traced
    name = f"echo{secrets.token_hex(3)}"
    async with aiohttp.ClientSession(base_url=cluster.api_host,
                                     headers=cluster.auth_header) as http:
        async with http.put(f"{ACTIONS}/{name}",
                            json={"exec": {"kind": "python:3.11", "code": ECHO}}) as resp:
            assert resp.status == 200, await resp.text()
        caller = f"00-{TRACE}-{CALLER_SPAN}-01"
        # Cold: gateway -> initializer -> invoker.
        async with http.post(f"{ACTIONS}/{name}?blocking=true", json={"n": 1},
                             headers={"traceparent": caller}) as resp:
            assert resp.status == 200, await resp.text()
            record = await resp.json()
        annotations = {a["key"]: a["value"] for a in record["annotations"]}
        assert annotations["traceparent"].split("-")[1] == TRACE

        spans = await collector.wait_for(TRACE, {
            ("funtainer-gateway", "invoke"), ("funtainer-initializer", "place"),
            ("funtainer-invoker", "activation"), ("funtainer-invoker", "container create"),
            ("funtainer-invoker", "/init"), ("funtainer-invoker", "/run")})
        [invoke] = spans["funtainer-gateway", "invoke"]
        [place] = spans["funtainer-initializer", "place"]
        [activation] = spans["funtainer-invoker", "activation"]
        assert invoke.parent_id == CALLER_SPAN
        assert place.parent_id == invoke.span_id
        assert activation.parent_id == place.span_id
        for child in ("container create", "/init", "/run"):
            assert spans["funtainer-invoker", child][0].parent_id == activation.span_id

        # Warm: on the direct path the gateway hands it to the invoker itself, else through
        # the initializer as before; either way one chain up to the gateway's span.
        again = "1" * 32
        async with http.post(f"{ACTIONS}/{name}?blocking=true", json={"n": 2},
                             headers={"traceparent": f"00-{again}-{CALLER_SPAN}-01"}) as resp:
            assert resp.status == 200
        spans = await collector.wait_for(again, {("funtainer-gateway", "invoke"),
                                                 ("funtainer-invoker", "activation"),
                                                 ("funtainer-invoker", "/run")})
        by_id = {span.span_id: span for found in spans.values() for span in found}
        [invoke] = spans["funtainer-gateway", "invoke"]
        chain, at = [], spans["funtainer-invoker", "/run"][0]
        while at.parent_id in by_id:
            at = by_id[at.parent_id]
            chain.append((at.service, at.name))
        assert chain in (
            [("funtainer-invoker", "activation"), ("funtainer-gateway", "invoke")],
            [("funtainer-invoker", "activation"), ("funtainer-initializer", "place"),
             ("funtainer-gateway", "invoke")])
        assert invoke.parent_id == CALLER_SPAN

        # No (or a malformed) traceparent: a trace of its own all the same.
        for headers in ({}, {"traceparent": "00-garbage-01"}):
            async with http.post(f"{ACTIONS}/{name}?blocking=true", json={},
                                 headers=headers) as resp:
                body = await resp.json()
            traceparent = next(a["value"] for a in body["annotations"]
                               if a["key"] == "traceparent")
            fresh = traceparent.split("-")[1]
            assert fresh not in (TRACE, again)
            await collector.wait_for(fresh, {("funtainer-gateway", "invoke"),
                                             ("funtainer-invoker", "/run")})
