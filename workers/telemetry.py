"""OpenTelemetry for writeback processes: where traces and metrics go, and the Temporal tracing
interceptor that carries one trace from a caller's submit through the workflow and its activities
into the EHR request (activities/ehr_telemetry.py).

Exporters, chosen by the environment:
- ``OTEL_EXPORTER_OTLP_ENDPOINT`` (e.g. ``http://otel-collector:4318``): traces and metrics over
  OTLP/HTTP (the standard ``OTEL_*`` variables apply: headers, per-signal endpoints);
- ``WRITEBACK_METRICS_PORT``: a Prometheus scrape endpoint on that port (``/metrics``);
- ``WRITEBACK_TELEMETRY_CONSOLE=1``: spans and metrics printed to stderr, for local looking.
With none of these, instruments are no-ops and nothing is exported. Spans are exported through
``ScrubbedSpans`` (workers/hygiene.py): no exception text leaves in a status or an event.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

from workers.hygiene import ScrubbedSpans
from workers.settings import Settings


@dataclass
class Telemetry:
    """The providers this process configured (shut down to flush before exit)."""

    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    exporters: list[str] = field(default_factory=list)

    def shutdown(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def tracing_interceptors() -> Sequence[Interceptor]:
    """For ``Client.connect``: applies to the client's calls and to workers built on it."""
    return [TracingInterceptor()]


def install(
    span_processors: Sequence[SpanProcessor],
    metric_readers: Sequence[MetricReader],
    service_name: str,
) -> Telemetry:
    """Make these the process's global providers (OpenTelemetry allows this once per process)."""
    resource = Resource.create({"service.name": service_name})
    telemetry = Telemetry()
    if span_processors:
        telemetry.tracer_provider = TracerProvider(resource=resource)
        for processor in span_processors:
            telemetry.tracer_provider.add_span_processor(processor)
        trace.set_tracer_provider(telemetry.tracer_provider)
    if metric_readers:
        telemetry.meter_provider = MeterProvider(
            resource=resource, metric_readers=list(metric_readers)
        )
        metrics.set_meter_provider(telemetry.meter_provider)
    return telemetry


def configure_from_env(settings: Settings, service_name: str = "writeback-worker") -> Telemetry:
    span_processors: list[SpanProcessor] = []
    readers: list[MetricReader] = []
    exporters: list[str] = []
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_processors.append(BatchSpanProcessor(ScrubbedSpans(OTLPSpanExporter())))
        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        exporters.append(f"otlp {os.environ['OTEL_EXPORTER_OTLP_ENDPOINT']}")
    if settings.metrics_port is not None:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port)
        readers.append(PrometheusMetricReader())
        exporters.append(f"prometheus :{settings.metrics_port}/metrics")
    if os.environ.get("WRITEBACK_TELEMETRY_CONSOLE") == "1":
        span_processors.append(
            SimpleSpanProcessor(ScrubbedSpans(ConsoleSpanExporter(out=sys.stderr)))
        )
        readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter(out=sys.stderr)))
        exporters.append("console")
    telemetry = install(span_processors, readers, os.environ.get("OTEL_SERVICE_NAME", service_name))
    telemetry.exporters = exporters
    return telemetry
