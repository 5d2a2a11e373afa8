"""A create's read-back and copy count made in the attempt itself (EhrWrite.confirm): against
the real sandbox, a conditional create is verified with two EHR requests (the POST and one search
whose copy serves as read-back) and one activity; when the search cannot show the copy, the read
by id decides; when confirming fails, the workflow confirms in its own steps and sends nothing
again."""

from __future__ import annotations

import httpx
from support.activities import activity_environment
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command, run_to_end
from temporalio.api.enums.v1 import EventType

from activities.ehr_client import EhrClient
from activities.ehr_writes import EhrWrites
from activities.models import EhrWrite
from activities.rereads import PAGE_READ_TRIES
from adapters.fhir_r4 import prepare_create
from adapters.tenants import TenantRegistry
from workers.client import WritebackClient
from workflows.contract import WriteState

TENANT = "demo-r4"  # conditional create, search without lag


async def requests_of(faults: httpx.AsyncClient, workflow_id: str) -> list[tuple[str, str]]:
    """This write's EHR requests as (method, path), oldest first."""
    logged = (await faults.get(f"/_admin/requests/{TENANT}")).json()["requests"]
    return [
        (r["method"], r["path"])
        for r in logged
        if str(r.get("request_id") or "").startswith(f"{workflow_id}/")
    ]


async def test_a_conditional_create_is_verified_with_two_requests_and_one_activity(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    await faults.post(f"/_admin/reset/{TENANT}")
    cmd = command(TENANT, key)

    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED
    assert status.copies == 1
    sent = await requests_of(faults, cmd.workflow_id)
    assert sent == [("POST", "/fhir/demo-r4/Observation"), ("GET", "/fhir/demo-r4/Observation")]
    history = await writeback.temporal.get_workflow_handle(cmd.workflow_id).fetch_history()
    scheduled = [
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    ]
    assert [e.activity_task_scheduled_event_attributes.activity_type.name for e in scheduled] == [
        "write"
    ]
    assert [entry.step for entry in status.ehr_log] == ["write", "verify", "copies"]


async def test_when_confirming_in_the_attempt_fails_the_write_confirms_by_itself_once(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """The attempt's search fails on every try: the attempt still answers as acknowledged (it is
    never sent again), and the workflow reads back and counts in steps of its own."""
    failing_search = {"kind": "status", "status": 503, "method": "GET"}
    await faults.post(f"/_admin/reset/{TENANT}")
    queue = [failing_search] * PAGE_READ_TRIES
    await faults.post(f"/_admin/faults/{TENANT}", json={"queue": queue})
    cmd = command(TENANT, key)

    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED and status.copies == 1
    assert status.attempts == 1
    sent = await requests_of(faults, cmd.workflow_id)
    assert [method for method, _ in sent].count("POST") == 1
    # the attempt's tries, then the workflow's own read by id and search
    assert sent[-2:] == [
        ("GET", f"/fhir/demo-r4/{status.resource}"),
        ("GET", "/fhir/demo-r4/Observation"),
    ]


async def test_a_copy_the_search_does_not_show_yet_is_read_by_id_and_not_counted(
    ehr: SandboxProcess, tenants: TenantRegistry, faults: httpx.AsyncClient, key: str
) -> None:
    """The index lags the write: the read by id is the read-back, and the count holds no copy
    (the workflow then searches again until the index shows it, as without this)."""
    lagging = {"kind": "delayed_indexing", "seconds": 30, "method": "POST"}
    await faults.post(f"/_admin/reset/{TENANT}")
    await faults.post(f"/_admin/faults/{TENANT}", json={"queue": [lagging]})
    tenant = tenants.get(TENANT)
    assert tenant is not None
    cmd = command(TENANT, key)
    order = EhrWrite(
        tenant=TENANT,
        request_id=f"{cmd.workflow_id}/write/1",
        request=prepare_create(tenant, cmd.resource, cmd.command_identifier),
        confirm=True,
    )
    async with httpx.AsyncClient() as http:
        receipt = await activity_environment().run(EhrWrites(EhrClient(tenants, http)).write, order)

    assert receipt.confirmation is not None
    assert receipt.confirmation.copies.references == []
    assert receipt.confirmation.verification.matches
    assert await requests_of(faults, cmd.workflow_id) == [
        ("POST", "/fhir/demo-r4/Observation"),
        ("GET", "/fhir/demo-r4/Observation"),
        ("GET", f"/fhir/demo-r4/{receipt.reference}"),
    ]
