"""A person's ``confirm`` on a saga whose withdrawal failed ("I withdrew it in the EHR by hand")
is read back before anything is believed: each pending step is read, a step really out of the
chart becomes ``withdrawn_by_hand``, a step still live stays ``failed`` with what the read-back
showed, and the saga keeps waiting in ``compensation_failed`` until every step is out.

Time-skipping server, real worker, real sandbox EHR; the person's work in the EHR is done on the
sandbox directly (tests/support/sagas.py)."""

from __future__ import annotations

import httpx
from support.sagas import (
    REFUSE_NOTIFY,
    changed_by_hand,
    decision,
    deleted_by_hand,
    read,
    refuse_withdrawal,
    saga,
    settled,
    step_of,
    stored,
)
from support.sandbox_process import SandboxProcess

from workers import samples
from workers.client import WritebackClient
from workflows.contract import ResolutionAction, WriteState
from workflows.saga_contract import SagaCommand, SagaStep


async def parked_referral(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str, *refused: str
) -> SagaCommand:
    """A referral whose Communication is refused and whose withdrawals of ``refused`` types are
    refused too: the saga waits in compensation_failed."""
    queue = [REFUSE_NOTIFY] + [refuse_withdrawal(resource_type) for resource_type in refused]
    await faults.post("/_admin/faults/demo-r4", json={"queue": queue})
    command = saga("demo-r4", key, samples.referral("confirm-pt"))
    await writeback.submit_saga(command)
    assert (await settled(writeback, command.workflow_id)).state is WriteState.COMPENSATION_FAILED
    return command


async def test_confirm_reads_each_step_back_and_keeps_waiting_for_one_still_in_the_chart(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    command = await parked_referral(writeback, faults, key, "ServiceRequest", "Task")
    parked = await writeback.saga(command.workflow_id)
    request_ref = str(step_of(parked, "request").resource)
    task_ref = str(step_of(parked, "task").resource)
    # the person revokes the request in the EHR, forgets the task, and confirms
    await changed_by_hand(faults, "demo-r4", request_ref, status="revoked")
    answer = await writeback.resolve(
        command.workflow_id, decision(ResolutionAction.CONFIRM), "d-confirm-1"
    )

    assert answer.state is WriteState.COMPENSATION_FAILED, answer.reason
    assert task_ref in (answer.reason or "") and request_ref not in (answer.reason or "")
    assert "not withdrawn" in (answer.reason or "")
    whole = await writeback.saga(command.workflow_id)
    request, task = step_of(whole, "request"), step_of(whole, "task")
    assert request.compensation == "withdrawn_by_hand"
    assert "read back" in (request.detail or "") and "revoked" in (request.detail or "")
    assert task.compensation == "failed"
    assert "read-back shows it is not withdrawn" in (task.detail or "")
    assert [r["status"] for r in stored(ehr, command, "task")] == ["requested"]

    # once the task is cancelled by hand too, the same decision settles the saga
    await changed_by_hand(faults, "demo-r4", task_ref, status="cancelled")
    done = await writeback.resolve(
        command.workflow_id, decision(ResolutionAction.CONFIRM), "d-confirm-2"
    )
    assert done.state is WriteState.COMPENSATED, done.reason
    whole = await writeback.saga(command.workflow_id)
    assert step_of(whole, "task").compensation == "withdrawn_by_hand"
    assert step_of(whole, "request").compensation == "withdrawn_by_hand"


async def test_confirm_accepts_entered_in_error_set_by_hand_where_we_would_revoke(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    """By hand, a clinician may mark the request entered-in-error rather than revoked: either is
    out of the chart (adapters.compensation.is_withdrawn)."""
    command = await parked_referral(writeback, faults, key, "ServiceRequest")
    request_ref = str(step_of(await writeback.saga(command.workflow_id), "request").resource)
    await changed_by_hand(faults, "demo-r4", request_ref, status="entered-in-error")
    done = await writeback.resolve(command.workflow_id, decision(ResolutionAction.CONFIRM), key)

    assert done.state is WriteState.COMPENSATED, done.reason
    request = step_of(await writeback.saga(command.workflow_id), "request")
    assert request.compensation == "withdrawn_by_hand"
    assert "entered-in-error" in (request.detail or "")


async def test_confirm_counts_a_resource_gone_from_the_ehr_as_out_of_the_chart_and_says_gone(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    """Deleted by hand (404/410 on read-back): not in the chart, which is what compensation
    needs; the step says it is gone rather than withdrawn."""
    command = await parked_referral(writeback, faults, key, "ServiceRequest")
    request_ref = str(step_of(await writeback.saga(command.workflow_id), "request").resource)
    await deleted_by_hand(faults, "demo-r4", request_ref)
    assert await read(faults, "demo-r4", request_ref) is None
    done = await writeback.resolve(command.workflow_id, decision(ResolutionAction.CONFIRM), key)

    assert done.state is WriteState.COMPENSATED, done.reason
    request = step_of(await writeback.saga(command.workflow_id), "request")
    assert request.compensation == "withdrawn_by_hand"
    assert "gone" in (request.detail or "")


async def test_confirm_on_a_create_only_tenant_needs_the_readings_marked_by_hand(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """Epic's API cannot withdraw the two readings written before the refused third; the person
    gets the instruction, and a confirm before doing it changes nothing."""
    first, second, third = samples.vitals_panel("confirm-pt-epic")
    broken = SagaStep(name=third.name, resource=third.resource | {"status": "not-a-status"})
    panel = saga("demo-epic", key, [first, second, broken], kind="vitals-panel")
    await writeback.submit_saga(panel)
    assert (await settled(writeback, panel.workflow_id)).state is WriteState.COMPENSATION_FAILED

    early = await writeback.resolve(panel.workflow_id, decision(ResolutionAction.CONFIRM), "d-1")
    assert early.state is WriteState.COMPENSATION_FAILED
    whole = await writeback.saga(panel.workflow_id)
    assert [step.compensation for step in whole.steps] == ["not_possible"] * 2 + [None]
    assert all("then resolve this saga with 'confirm'" in (s.detail or "") for s in whole.steps[:2])
    assert [r["status"] for r in stored(ehr, panel, "heart-rate")] == ["final"]

    for step in whole.steps[:2]:
        await changed_by_hand(faults, "demo-epic", str(step.resource), status="entered-in-error")
    done = await writeback.resolve(panel.workflow_id, decision(ResolutionAction.CONFIRM), "d-2")
    assert done.state is WriteState.COMPENSATED, done.reason
    whole = await writeback.saga(panel.workflow_id)
    assert [step.compensation for step in whole.steps] == ["withdrawn_by_hand"] * 2 + [None]
