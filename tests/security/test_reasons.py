"""Issue 17, finding 5: text an EHR (or a caller) controls must not reach a reason, a log line or
a span. Attacks: an EHR answers a write with an OperationOutcome whose ``expression``,
``details`` and ``diagnostics`` carry a patient's name; a command carries a made-up key naming a
patient. Neither may appear in the write's status (reason, EHR log), the worker's log at WARNING
(where the SDK logs failed activities with their traceback), or the spans we export."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode
from support.workers import running_worker
from temporalio.testing import WorkflowEnvironment

from adapters.tenants import TenantRegistry
from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteCommand, WriteState

#: adapters/reasons.py MAX_REASON_CHARS (not imported: the attack runs against main too)
MAX_REASON_CHARS = 600
CANARY = f"janeDoeMrn{uuid.uuid4().hex[:8]}"

HOSTILE_OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "invalid",
            "diagnostics": f"Patient Jane Doe {CANARY} has no such code",
            "details": {"text": f"{CANARY} " * 400, "coding": [{"code": f"{CANARY} 555"}]},
            "expression": [f"Observation.{CANARY}", f"Patient.name.where(given='{CANARY}')"],
        }
    ],
}


@pytest.fixture
async def writeback(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry
) -> AsyncIterator[WritebackClient]:
    async with running_worker(time_skipping.client, tenants) as client:
        yield client


async def test_an_ehr_outcome_reaches_no_reason_and_no_warning(
    writeback: WritebackClient,
    faults: httpx.AsyncClient,
    key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fault = {"kind": "status", "status": 422, "method": "POST", "outcome": HOSTILE_OUTCOME}
    assert (await faults.post("/_admin/faults/demo-r4", json={"queue": [fault]})).is_success
    resource = samples.heart_rate("p", 70)
    command = WriteCommand(tenant="demo-r4", idempotency_key=key, resource=resource)
    with caplog.at_level(logging.WARNING):
        await writeback.submit(command)
        status = await writeback.wait(command.workflow_id)
    assert status.state is WriteState.REJECTED, status
    assert status.reason and "HTTP 422" in status.reason and "invalid" in status.reason
    assert len(status.reason) <= MAX_REASON_CHARS
    seen = status.model_dump_json() + "\n".join(caplog.messages) + caplog.text
    assert CANARY not in seen
    assert any("Completing activity as failed" in m for m in caplog.messages)  # not vacuous


async def test_a_made_up_key_in_a_command_reaches_no_reason(
    writeback: WritebackClient, key: str
) -> None:
    resource = samples.heart_rate("p", 70)
    resource[CANARY] = "x"
    resource["valueQuantity"][f"_{CANARY}"] = 1
    command = WriteCommand(tenant="demo-r4", idempotency_key=key, resource=resource)
    await writeback.submit(command)
    status = await writeback.wait(command.workflow_id)
    assert status.state is WriteState.REJECTED and status.error_class == "validation", status
    assert "extra_forbidden" in (status.reason or "")
    assert CANARY not in status.model_dump_json()


def test_an_exception_text_leaves_in_no_exported_span() -> None:
    from workers.hygiene import ScrubbedSpans

    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbedSpans(exported)))
    with provider.get_tracer("t").start_as_current_span("RunActivity:write") as span:
        span.set_status(Status(StatusCode.ERROR, f"ApplicationError: {CANARY}"))
        span.record_exception(KeyError(CANARY))
    (done,) = exported.get_finished_spans()
    assert done.status.description == "ApplicationError"
    assert CANARY not in str([e.attributes for e in done.events])
