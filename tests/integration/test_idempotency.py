"""Acceptance 2: the same command submitted twice, concurrently and sequentially, leaves exactly
one workflow and one resource in the EHR (counted from the sandbox's database)."""

from __future__ import annotations

import asyncio

import pytest
from support.audit import resources_for_command
from support.sandbox_process import SandboxProcess

from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteCommand, WriteState

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("tenant", ["demo-r4", "demo-epic", "demo-cerner"])
async def test_concurrent_duplicates_make_one_workflow_and_one_resource(
    writeback: WritebackClient, ehr: SandboxProcess, tenant: str, key: str
) -> None:
    cmd = WriteCommand(tenant=tenant, idempotency_key=key, resource=samples.heart_rate("it", 64))
    submissions = await asyncio.gather(*(writeback.submit(cmd) for _ in range(10)))

    assert {s.workflow_id for s in submissions} == {cmd.workflow_id}
    assert len({s.run_id for s in submissions}) == 1
    assert sorted(s.joined for s in submissions) == [False] + [True] * 9  # one started it
    status = await writeback.wait(cmd.workflow_id)
    assert status.state is WriteState.VERIFIED
    assert resources_for_command(ehr.db, tenant, cmd.command_identifier) == 1


@pytest.mark.parametrize("tenant", ["demo-r4", "demo-epic", "demo-cerner"])
async def test_sequential_resubmission_after_completion_writes_nothing_new(
    writeback: WritebackClient, ehr: SandboxProcess, tenant: str, key: str
) -> None:
    cmd = WriteCommand(tenant=tenant, idempotency_key=key, resource=samples.heart_rate("it", 65))
    first = await writeback.wait((await writeback.submit(cmd)).workflow_id)
    again = await writeback.submit(cmd)
    second = await writeback.wait(again.workflow_id)

    assert again.joined  # the finished write, not a new one
    assert first.state is second.state is WriteState.VERIFIED
    assert second.resource == first.resource
    workflows = [
        wf async for wf in writeback.temporal.list_workflows(f"WorkflowId = '{cmd.workflow_id}'")
    ]
    assert len(workflows) == 1
    assert resources_for_command(ehr.db, tenant, cmd.command_identifier) == 1


async def test_search_attributes_carry_state_and_no_patient_data(
    writeback: WritebackClient, key: str
) -> None:
    resource = samples.heart_rate("patient-with-secret-id", 66)
    cmd = WriteCommand(tenant="demo-epic", idempotency_key=key, resource=resource)
    await writeback.wait((await writeback.submit(cmd)).workflow_id)
    description = await writeback.temporal.get_workflow_handle(cmd.workflow_id).describe()

    attributes = {pair.key.name: pair.value for pair in description.typed_search_attributes}
    assert attributes["WritebackState"] == "verified"
    assert attributes["WritebackTenant"] == "demo-epic"
    assert attributes["WritebackVendor"] == "epic"
    assert attributes["WritebackResourceType"] == "Observation"
    assert "patient-with-secret-id" not in repr(attributes) + cmd.workflow_id
