"""ClinicalWrite on the time-skipping test server, with the real worker and the real sandbox EHR.

Retry delays (full jitter, Retry-After) are skipped by the test server, so failure paths that take
minutes of workflow time run in seconds.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support.audit import resources_for_command
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command, run_to_end, wait_until_settled
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from workers import samples
from workers.client import DecisionRefused, WritebackClient
from workflows.contract import (
    Resolution,
    ResolutionAction,
    Urgency,
    WriteState,
)

HAPPY_PATH = [
    WriteState.REQUESTED,
    WriteState.VALIDATED,
    WriteState.AUTHORIZED,
    WriteState.IN_FLIGHT,
    WriteState.ACKNOWLEDGED,
    WriteState.VERIFIED,
]


async def history_events(client: WritebackClient, workflow_id: str) -> list[EventType.ValueType]:
    history = await client.temporal.get_workflow_handle(workflow_id).fetch_history()
    return [event.event_type for event in history.events]


@pytest.mark.parametrize("tenant", ["demo-r4", "demo-epic", "demo-cerner"])
async def test_vital_sign_is_written_once_and_verified_on_each_vendor(
    writeback: WritebackClient, ehr: SandboxProcess, tenant: str, key: str
) -> None:
    cmd = command(tenant, key, samples.blood_pressure("wf-test", 120, 80))
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED
    assert [t.state for t in status.transitions] == HAPPY_PATH
    assert status.resource and status.resource.startswith("Observation/")
    assert status.version == "1"
    assert status.vendor and status.resource_type == "Observation"
    assert resources_for_command(ehr.db, tenant, cmd.command_identifier) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.pop("code"), "code"),
        (lambda r: r.update(resourceType="Patient"), "resourceType"),
        (lambda r: r.update(resourceType="Observatio"), "resourceType"),
        (lambda r: r.update(status="draft"), "status"),
        (lambda r: r["valueQuantity"].update(code="kg"), "valueQuantity.code"),
        (lambda r: r.update(subject={"reference": "Group/1"}), "subject"),
        (lambda r: r.update(valueQuantity={"value": "seventy"}), "valueQuantity.value"),
    ],
)
async def test_invalid_observation_is_rejected_with_the_field_and_no_retry(
    writeback: WritebackClient, ehr: SandboxProcess, key: str, change: Any, field: str
) -> None:
    resource = samples.heart_rate("wf-test", 72)
    change(resource)
    cmd = command("demo-r4", key, resource)
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.REJECTED
    assert status.error_class == "validation"
    assert status.reason and status.reason.startswith(field)
    assert "seventy" not in status.reason  # the reason names the field, never its value
    events = await history_events(writeback, cmd.workflow_id)
    # Markers: the write's version patch (workflows/write_kernel.py CURRENT_SHAPE), then local
    # activities prepare (attempt 1) and the audit ledger's; nothing to the EHR.
    assert events.count(EventType.EVENT_TYPE_MARKER_RECORDED) == 3
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in events
    assert resources_for_command(ehr.db, "demo-r4", cmd.command_identifier) == 0


async def test_unknown_tenant_is_rejected_naming_the_tenant(
    writeback: WritebackClient, key: str
) -> None:
    status = await run_to_end(writeback, command("no-such-tenant", key))
    assert status.state is WriteState.REJECTED
    assert status.error_class == "validation"
    assert "unknown tenant 'no-such-tenant'" in (status.reason or "")


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 503},
        {"kind": "status", "status": 502},
        {"kind": "status", "status": 429, "retry_after": 2},
    ],
)
async def test_transient_ehr_failures_retry_then_verify_once(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str, fault: Any
) -> None:
    await faults.post("/_admin/faults/demo-r4", json={"queue": [{**fault, "method": "POST"}] * 2})
    cmd = command("demo-r4", key)
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED
    assert status.attempts == 3
    assert resources_for_command(ehr.db, "demo-r4", cmd.command_identifier) == 1


@pytest.mark.parametrize(
    ("http_status", "error_class"),
    [
        (400, "validation"),
        (422, "validation"),
        (401, "authorization"),
        (403, "authorization"),
        (404, "not_found"),
        (405, "ehr_rejected"),
    ],
)
async def test_ehr_refusals_are_rejected_without_retry(
    writeback: WritebackClient,
    faults: httpx.AsyncClient,
    key: str,
    http_status: int,
    error_class: str,
) -> None:
    await faults.post(
        "/_admin/faults/demo-r4",
        json={"queue": [{"kind": "status", "status": http_status, "method": "POST"}] * 3},
    )
    status = await run_to_end(writeback, command("demo-r4", key))

    assert status.state is WriteState.REJECTED
    assert status.error_class == error_class
    assert f"HTTP {http_status}" in (status.reason or "")
    remaining = (await faults.get("/_admin/faults/demo-r4")).json()["queue"]
    assert len(remaining) == 2  # exactly one POST was made


async def test_retry_budget_exhausted_waits_for_a_person_then_abandons(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    await faults.post(
        "/_admin/faults/demo-r4",
        json={"queue": [{"kind": "status", "status": 503, "method": "POST"}] * 10},
    )
    cmd = command("demo-r4", key, urgency=Urgency.STAT)
    await writeback.submit(cmd)
    status = await wait_until_settled(time_skipping, writeback, cmd.workflow_id)

    assert status.state is WriteState.PENDING_CONFIRMATION
    assert status.error_class == "transient"
    assert (
        len((await faults.get("/_admin/faults/demo-r4")).json()["queue"]) == 5
    )  # stat budget: 5 tries
    decision = Resolution(action=ResolutionAction.ABANDON, by="op-1", reason="EHR down, re-enter")
    final = await writeback.resolve(cmd.workflow_id, decision, decision_id=f"{key}-d1")
    assert final.state is WriteState.ABANDONED
    assert "abandon by op-1" in (final.transitions[-1].detail or "")


async def test_read_back_mismatch_parks_then_a_person_decides(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    """The EHR stored the resource without our identifier: never silently 'verified'."""
    await faults.post(
        "/_admin/faults/demo-cerner",
        json={"queue": [{"kind": "drop_identifier", "method": "POST"}]},
    )
    cmd = command("demo-cerner", key)
    await writeback.submit(cmd)
    status = await wait_until_settled(time_skipping, writeback, cmd.workflow_id)

    assert status.state is WriteState.PENDING_CONFIRMATION
    assert status.error_class == "mismatch"
    assert "identifier" in (status.reason or "")
    reverify = Resolution(action=ResolutionAction.REVERIFY, by="op-1", reason="look again")
    again = await writeback.resolve(cmd.workflow_id, reverify, decision_id=f"{key}-d1")
    assert again.state is WriteState.PENDING_CONFIRMATION  # still differs: still waiting
    abandon = Resolution(action=ResolutionAction.ABANDON, by="op-1", reason="chart fixed by hand")
    final = await writeback.resolve(cmd.workflow_id, abandon, decision_id=f"{key}-d2")
    assert final.state is WriteState.ABANDONED


async def test_a_decision_on_a_write_that_is_not_waiting_is_refused(
    writeback: WritebackClient, key: str
) -> None:
    cmd = command("demo-r4", key)
    await run_to_end(writeback, cmd)
    decision = Resolution(action=ResolutionAction.ABANDON, by="op-1", reason="oops")
    with pytest.raises(DecisionRefused):
        await writeback.resolve(cmd.workflow_id, decision, decision_id=f"{key}-d1")


async def test_resubmitting_a_command_joins_the_same_workflow(
    writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    cmd = command("demo-epic", key)
    first = await writeback.submit(cmd)
    again = await writeback.submit(cmd)
    status = await run_to_end(writeback, cmd)  # a third time, after it may have completed

    assert first.workflow_id == again.workflow_id == cmd.workflow_id
    assert first.run_id == again.run_id
    assert not first.joined and again.joined  # the HTTP API compares only joined requests
    assert status.state is WriteState.VERIFIED
    assert resources_for_command(ehr.db, "demo-epic", cmd.command_identifier) == 1
