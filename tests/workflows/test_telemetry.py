"""Issue 10, acceptance 1: in-memory exporters over real writes (time-skipping server, real worker,
real sandbox). A write that retries once after a 503 is one trace from the caller's submit to the
EHR requests, which carry it in `traceparent` (the sandbox logs it); the retry shows its error
class; every documented metric is recorded with tenant/vendor/resource labels and nothing else
that could carry patient data."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support.updates import conflicting_update
from support.workers import running_worker
from support.workflow_runs import command, run_to_end
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.metrics import NAMES
from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from adapters.tenants import TenantRegistry
from workers import samples
from workers.client import WritebackClient
from workers.telemetry import install, tracing_interceptors
from workflows.contract import WriteState

ALLOWED_LABELS = {"tenant", "vendor", "resource_type", "state", "error_class"}
SPANS = InMemorySpanExporter()
METRICS = InMemoryMetricReader()
# OpenTelemetry's global providers can be set once per process: this module owns them.
install([SimpleSpanProcessor(SPANS)], [METRICS], "writeback-test")


@pytest.fixture
async def traced(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry
) -> AsyncIterator[WritebackClient]:
    """A worker and client whose Temporal client carries the tracing interceptor."""
    client = Client(
        time_skipping.client.service_client,
        namespace=time_skipping.client.namespace,
        data_converter=pydantic_data_converter,
        interceptors=tracing_interceptors(),
    )
    async with running_worker(client, tenants) as writeback:
        yield writeback


ONE_503_ON_CREATE = {"kind": "status", "status": 503, "method": "POST"}


async def queue_fault(faults: httpx.AsyncClient, tenant: str, fault: dict[str, Any]) -> None:
    response = await faults.post(f"/_admin/faults/{tenant}", json={"queue": [fault]})
    assert response.status_code == 200, response.text


def data_points() -> dict[str, list[dict[str, Any]]]:
    """Metric name -> the label sets of its data points."""
    found: dict[str, list[dict[str, Any]]] = {}
    data = METRICS.get_metrics_data()
    assert data is not None
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                points = found.setdefault(metric.name, [])
                points.extend(dict(point.attributes or {}) for point in metric.data.data_points)
    return found


def trace_of(span: ReadableSpan) -> list[ReadableSpan]:
    assert span.context is not None
    trace_id = span.context.trace_id
    return [s for s in SPANS.get_finished_spans() if s.context and s.context.trace_id == trace_id]


async def test_a_retried_write_is_one_trace_from_submit_to_the_ehr_request(
    traced: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    await queue_fault(faults, "demo-r4", ONE_503_ON_CREATE)
    cmd = command("demo-r4", key)
    with trace.get_tracer("caller").start_as_current_span("caller submits") as root:
        status = await run_to_end(traced, cmd)
    assert status.state is WriteState.VERIFIED
    assert status.attempts == 2

    spans = trace_of(root)  # type: ignore[arg-type]
    names = [span.name for span in spans]
    assert "StartWorkflow:ClinicalWrite" in names
    assert "RunWorkflow:ClinicalWrite" in names
    assert names.count("RunActivity:write") == 2
    ehr_posts = [span for span in spans if span.name == "EHR POST Observation"]
    assert [p.attributes["http.response.status_code"] for p in ehr_posts] == [503, 201]  # type: ignore[index]
    assert [p.attributes["writeback.error_class"] for p in ehr_posts] == ["transient", "none"]  # type: ignore[index]
    # the retried attempt: its activity span failed with the error class, and the EHR request
    # under it carries the class too
    attempts = [span for span in spans if span.name == "RunActivity:write"]
    assert [span.status.is_ok for span in attempts] == [False, True]
    assert "transient" in (attempts[0].status.description or "")
    first_post = ehr_posts[0]
    assert first_post.parent is not None
    assert attempts[0].context is not None
    assert first_post.parent.span_id == attempts[0].context.span_id
    # the EHR received the trace: its request log has our traceparent and request ids
    trace_hex = format(root.get_span_context().trace_id, "032x")
    log = (await faults.get("/_admin/requests/demo-r4")).json()["requests"]
    ours = [r for r in log if r["request_id"] and r["request_id"].startswith(cmd.workflow_id)]
    assert [r["status"] for r in ours if r["method"] == "POST"] == [503, 201]
    assert all(r["traceparent"] and r["traceparent"].split("-")[1] == trace_hex for r in ours)


async def test_every_metric_is_recorded_with_tenant_vendor_and_resource_labels(
    traced: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    # retried once, then verified (retries, writes, time to verified, EHR latency)
    await queue_fault(faults, "demo-r4", ONE_503_ON_CREATE)
    assert (await run_to_end(traced, command("demo-r4", f"{key}-retry"))).state is (
        WriteState.VERIFIED
    )
    # invalid: a validation rejection
    invalid = samples.heart_rate("tel-invalid", 70)
    del invalid["subject"]
    rejected = await run_to_end(traced, command("demo-r4", f"{key}-invalid", invalid))
    assert rejected.state is WriteState.REJECTED
    # committed, answer lost: an ambiguous outcome, resolved by finding the copy it made
    await queue_fault(faults, "fast-r4", {"kind": "commit_then_drop", "method": "POST"})
    ambiguous = await run_to_end(traced, command("fast-r4", f"{key}-ambiguous"))
    assert ambiguous.state is WriteState.VERIFIED
    # two copies already in the EHR: a duplicate detection waiting for a person
    duplicated = command("demo-epic", f"{key}-dup")
    body = {
        **duplicated.resource,
        "identifier": [
            {"system": COMMAND_IDENTIFIER_SYSTEM, "value": duplicated.command_identifier}
        ],
    }
    for _ in range(2):
        await faults.post("/fhir/demo-epic/Observation", json=body)
    await traced.submit(duplicated)
    assert (await traced.wait(duplicated.workflow_id)).state is WriteState.PENDING_CONFIRMATION
    # the EHR stores it without our identifier: read-back mismatch
    await queue_fault(faults, "demo-cerner", {"kind": "drop_identifier", "method": "POST"})
    dropped = command("demo-cerner", f"{key}-drop")
    await traced.submit(dropped)
    mismatch = await traced.wait(dropped.workflow_id)
    assert (mismatch.state, mismatch.error_class) == (WriteState.PENDING_CONFIRMATION, "mismatch")
    # overlapping edits: a conflict
    _current, conflict = await conflicting_update(traced, faults, "demo-r4", f"{key}-conflict")
    assert conflict.state is WriteState.CONFLICT

    # the waiting ones would wake up (re-checks) whenever a later test skips time, with no worker
    # on this test's task queue: end them here
    for waiting in (duplicated.workflow_id, dropped.workflow_id, conflict.workflow_id):
        await traced.temporal.get_workflow_handle(waiting).terminate("test over")

    points = data_points()
    assert set(NAMES) <= points.keys(), set(NAMES) - points.keys()
    for name in NAMES:
        for labels in points[name]:
            assert {"tenant", "vendor", "resource_type"} <= labels.keys(), (name, labels)
            assert labels.keys() <= ALLOWED_LABELS, (name, labels)
            assert not any("Patient/" in str(value) for value in labels.values()), (name, labels)
    assert {
        "tenant": "demo-r4",
        "vendor": "generic_r4",
        "resource_type": "Observation",
        "error_class": "transient",
    } in points["writeback.retries"]
    assert {
        "tenant": "fast-r4",
        "vendor": "generic_r4",
        "resource_type": "Observation",
        "state": "verified",
    } in points["writeback.ambiguous_outcomes"]
    assert {
        "tenant": "demo-cerner",
        "vendor": "cerner",
        "resource_type": "Observation",
        "error_class": "mismatch",
    } in points["writeback.reconciliation.mismatches"]
    states = {labels["state"] for labels in points["writeback.duplicate_detections"]}
    assert {"acknowledged", "pending_confirmation"} <= states
    # no span attribute carries a patient reference either
    for span in SPANS.get_finished_spans():
        assert not any("Patient/" in str(v) for v in (span.attributes or {}).values()), span.name


def test_the_readme_documents_exactly_the_metrics_recorded() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("### Metrics", 1)[1].split("\n### ", 1)[0]
    documented = re.findall(r"^\| `(writeback\.[a-z_.]+)` \|", section, re.MULTILINE)
    assert documented == NAMES
