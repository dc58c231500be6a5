"""Traces: a W3C ``traceparent`` on every activation, and OpenTelemetry spans when asked for.

Every activation carries a ``traceparent`` from its HTTP request (the caller's, if it sent a
valid one; else a new one) through the bus into its record's annotations, so an activation
can be found by the trace it belongs to even with tracing off.

With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set, each process also records spans (gateway ->
initializer -> invoker -> the container's /init and /run) and exports them over OTLP/HTTP
(``opentelemetry-sdk``; the standard ``OTEL_*`` variables apply). Each span's context becomes
the ``traceparent`` handed on, so the next process's span is its child. Without it nothing
is imported and every call here returns at once: tracing off is free."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def valid_traceparent(value: str | None) -> str | None:
    """``value`` if it is a version-00 traceparent with non-zero ids (W3C: else ignored)."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) == _ZERO_TRACE or match.group(2) == _ZERO_SPAN:
        return None
    return match.group(0)


def new_traceparent() -> str:
    ids = os.urandom(24).hex()
    return f"00-{ids[:32]}-{ids[32:]}-01"  # all-zero ids: once in 2**64, and then ignored


def trace_id(traceparent: str) -> str:
    return traceparent.split("-")[1]


class Tracer:
    """Spans for one process, or nothing at all when no OTLP endpoint is configured."""

    def __init__(self, service: str, *, endpoint: str | None = None) -> None:
        self.service = service
        endpoint = endpoint if endpoint is not None else os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        self.enabled = bool(endpoint)
        self._provider: Any = None
        self._tracer: Any = None
        if self.enabled:
            self._start()

    def _start(self) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self._provider = TracerProvider(
            resource=Resource.create({SERVICE_NAME: f"funtainer-{self.service}"}))
        # Exported from the processor's own thread, in batches: never on the event loop.
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer("funtainer")

    def shutdown(self) -> None:
        """Export what is pending (called as the process stops)."""
        if self._provider is not None:
            self._provider.shutdown()

    @classmethod
    def off(cls, service: str) -> Tracer:
        """No spans whatever the environment says (services built in tests, in-process)."""
        return cls(service, endpoint="")

    def span(
        self, name: str, traceparent: str | None, *, kind: str = "internal",
        attributes: Mapping[str, str | int | bool] | None = None,
    ) -> AbstractContextManager[Span]:
        """A span, child of ``traceparent``; ``.traceparent`` is what to hand on (the span's
        own context, or ``traceparent`` itself when tracing is off). Off, this is on every
        activation's path: a ready-made context, no generator."""
        if not self.enabled:
            return nullcontext(Span(None, traceparent))
        return self._recorded(name, traceparent, kind, attributes or {})

    @contextmanager
    def _recorded(
        self, name: str, traceparent: str | None, kind: str,
        attributes: Mapping[str, str | int | bool],
    ) -> Iterator[Span]:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        propagator = TraceContextTextMapPropagator()
        parent = propagator.extract({"traceparent": traceparent}) if traceparent else None
        span_kind = getattr(trace.SpanKind, kind.upper())
        with self._tracer.start_as_current_span(name, context=parent, kind=span_kind,
                                                attributes=dict(attributes)) as span:
            carrier: dict[str, str] = {}
            propagator.inject(carrier, context=trace.set_span_in_context(span))
            yield Span(span, carrier.get("traceparent", traceparent))


class Span:
    def __init__(self, span: Any, traceparent: str | None) -> None:
        self._span = span
        self.traceparent = traceparent

    def set(self, key: str, value: str | int | bool) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def error(self, message: str) -> None:
        if self._span is not None:
            from opentelemetry.trace import Status, StatusCode

            self._span.set_status(Status(StatusCode.ERROR, message))
