"""The lab panel (three laboratory Observations, then the DiagnosticReport listing them) and the
care plan (a Goal, then the CarePlan pursuing it) written as sagas (#20, acceptance 2), on the
generic R4 and Oracle Health personalities, which take updates: verified with each reference
resolved to what the EHR stored, or, when the EHR refuses the last step, every earlier step
withdrawn (entered-in-error) as read back from the sandbox's own database.

Time-skipping server, real worker, real sandbox EHR."""

from __future__ import annotations

import httpx
import pytest
from support.sagas import saga, stored
from support.sandbox_process import SandboxProcess
from support.workflow_runs import result_of

from workers.client import WritebackClient
from workers.family_samples import PANEL_RESULTS, care_plan_saga, lab_panel
from workflows.clinical_saga import ClinicalSaga
from workflows.contract import WriteState
from workflows.saga_contract import SagaCommand, SagaStatus

TENANTS = [
    "families-r4",
    "families-patch-r4",
]  # Oracle Health takes no lab report or care plan (README: "What it writes")
RESULTS = [name for name, *_ in PANEL_RESULTS]


def refuse(resource_type: str) -> dict[str, object]:
    """The EHR refuses (422) the next create of ``resource_type``."""
    return {"kind": "status", "status": 422, "method": "POST", "type": resource_type}


async def run_saga(client: WritebackClient, command: SagaCommand) -> SagaStatus:
    submission = await client.submit_saga(command)
    handle = client.temporal.get_workflow_handle_for(ClinicalSaga.run, submission.workflow_id)
    return await result_of(handle)


@pytest.mark.parametrize("tenant", TENANTS)
async def test_a_lab_panel_ends_verified_with_its_report_listing_the_stored_results(
    writeback: WritebackClient, ehr: SandboxProcess, tenant: str, key: str
) -> None:
    command = saga(tenant, key, lab_panel("lab-pt-1"), kind="lab-panel")
    status = await run_saga(writeback, command)

    assert status.state is WriteState.VERIFIED, status.reason
    assert [step.state for step in status.steps] == [WriteState.VERIFIED] * 4
    results = [stored(ehr, command, name) for name in RESULTS]
    assert [len(copies) for copies in results] == [1, 1, 1]
    (report,) = stored(ehr, command, "report")
    assert report["result"] == [
        {"reference": f"Observation/{copies[0]['id']}"} for copies in results
    ]


@pytest.mark.parametrize("tenant", TENANTS)
async def test_a_refused_report_withdraws_the_three_results(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    tenant: str,
    key: str,
) -> None:
    await faults.post(f"/_admin/faults/{tenant}", json={"queue": [refuse("DiagnosticReport")]})
    command = saga(tenant, key, lab_panel("lab-pt-2"), kind="lab-panel")
    status = await run_saga(writeback, command)

    assert status.state is WriteState.COMPENSATED, status.reason
    assert stored(ehr, command, "report") == []
    for name in RESULTS:
        assert [r["status"] for r in stored(ehr, command, name)] == ["entered-in-error"], name
    by_name = {step.name: step for step in status.steps}
    assert by_name["report"].state is WriteState.REJECTED
    assert [by_name[name].compensation for name in RESULTS] == ["withdrawn"] * 3


@pytest.mark.parametrize("tenant", TENANTS)
async def test_a_care_plan_ends_verified_pursuing_the_stored_goal(
    writeback: WritebackClient, ehr: SandboxProcess, tenant: str, key: str
) -> None:
    command = saga(tenant, key, care_plan_saga("plan-pt-1"), kind="care-plan")
    status = await run_saga(writeback, command)

    assert status.state is WriteState.VERIFIED, status.reason
    (goal,) = stored(ehr, command, "goal")
    (plan,) = stored(ehr, command, "plan")
    assert plan["goal"] == [{"reference": f"Goal/{goal['id']}"}]
    assert goal["lifecycleStatus"] == "active"


@pytest.mark.parametrize("tenant", TENANTS)
async def test_a_refused_care_plan_withdraws_its_goal(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    tenant: str,
    key: str,
) -> None:
    await faults.post(f"/_admin/faults/{tenant}", json={"queue": [refuse("CarePlan")]})
    command = saga(tenant, key, care_plan_saga("plan-pt-2"), kind="care-plan")
    status = await run_saga(writeback, command)

    assert status.state is WriteState.COMPENSATED, status.reason
    assert stored(ehr, command, "plan") == []
    assert [g["lifecycleStatus"] for g in stored(ehr, command, "goal")] == ["entered-in-error"]
    assert {step.name: step.compensation for step in status.steps}["goal"] == "withdrawn"
