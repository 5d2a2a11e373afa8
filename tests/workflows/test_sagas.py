"""Multi-resource sagas on the time-skipping server against the real sandbox: every step a full
ClinicalWrite, clinical compensation (never DELETE) when a later step fails, verified and audited
in the sandbox's own store, and failed compensations parked for a person."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support.audit import current_resources_for_command
from support.sagas import changed_by_hand
from support.sandbox_process import SandboxProcess
from support.workflow_runs import result_of
from temporalio.testing import WorkflowEnvironment

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from workers import samples
from workers.client import DecisionRefused, WritebackClient
from workflows.clinical_saga import ClinicalSaga
from workflows.contract import Resolution, ResolutionAction, WriteState
from workflows.saga_contract import SagaCommand, SagaStatus, SagaStep

REFUSE_COMMUNICATION = {"kind": "status", "status": 422, "method": "POST", "type": "Communication"}
DROP_TASK_CREATE = {"kind": "commit_then_drop", "method": "POST", "type": "Task"}


def saga(tenant: str, key: str, steps: list[SagaStep], kind: str = "referral") -> SagaCommand:
    return SagaCommand(
        tenant=tenant,
        idempotency_key=key,
        kind=kind,
        steps=steps,
        requested_by="referrals-svc",
        on_behalf_of="Practitioner/dr-synthetic",
    )


async def run_saga(client: WritebackClient, command: SagaCommand) -> SagaStatus:
    submission = await client.submit_saga(command)
    handle = client.temporal.get_workflow_handle_for(ClinicalSaga.run, submission.workflow_id)
    return await result_of(handle)


def stored(ehr: SandboxProcess, command: SagaCommand, step: str) -> list[dict[str, Any]]:
    """What the sandbox's own database holds for one step (not through its HTTP API)."""
    identifier = f"{command.tenant}:{command.step_key(step)}"
    return current_resources_for_command(ehr.db, command.tenant, identifier)


def decision(action: ResolutionAction) -> Resolution:
    return Resolution(action=action, by="op-7", reason=f"test {action.value}")


async def test_a_referral_writes_all_three_linked_by_the_ids_the_ehr_assigned(
    writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    command = saga("demo-r4", key, samples.referral("saga-pt-1"))
    status = await run_saga(writeback, command)

    assert status.state is WriteState.VERIFIED, status.reason
    assert [step.state for step in status.steps] == [WriteState.VERIFIED] * 3
    request, task, notify = (stored(ehr, command, name) for name in ("request", "task", "notify"))
    assert len(request) == len(task) == len(notify) == 1
    request_ref = f"ServiceRequest/{request[0]['id']}"
    assert task[0]["focus"] == {"reference": request_ref}
    assert notify[0]["about"] == [
        {"reference": request_ref},
        {"reference": f"Task/{task[0]['id']}"},
    ]


async def test_a_rejected_communication_withdraws_the_task_and_the_request(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """Acceptance 1: the Communication is refused (4xx): the Task ends cancelled, the
    ServiceRequest revoked, newest first, each read back; nothing is deleted."""
    await faults.post("/_admin/faults/demo-r4", json={"queue": [REFUSE_COMMUNICATION]})
    command = saga("demo-r4", key, samples.referral("saga-pt-2"))
    status = await run_saga(writeback, command)

    assert status.state is WriteState.COMPENSATED, status.reason
    request, task, notify = (stored(ehr, command, name) for name in ("request", "task", "notify"))
    assert [r["status"] for r in request] == ["revoked"]
    assert [r["status"] for r in task] == ["cancelled"]
    assert notify == []
    by_name = {step.name: step for step in status.steps}
    assert by_name["notify"].state is WriteState.REJECTED
    assert by_name["request"].compensation == by_name["task"].compensation == "withdrawn"
    withdrawn = [t.detail or "" for t in status.transitions if t.state is WriteState.COMPENSATED]
    assert withdrawn and withdrawn[0].index("Task/") < withdrawn[0].index("ServiceRequest/")


async def test_a_task_whose_answer_was_lost_is_found_and_withdrawn_too(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """Acceptance 2: the Task create commits but its answer is dropped; the step's retry finds
    it by its identifier, and when the Communication then fails it is withdrawn with the rest:
    zero orphans in the store."""
    for tenant in ("demo-r4", "demo-cerner"):
        await faults.post(
            f"/_admin/faults/{tenant}", json={"queue": [DROP_TASK_CREATE, REFUSE_COMMUNICATION]}
        )
        command = saga(tenant, f"{key}-{tenant}", samples.referral("saga-pt-3"))
        status = await run_saga(writeback, command)

        assert status.state is WriteState.COMPENSATED, status.reason
        task_step = next(step for step in status.steps if step.name == "task")
        assert task_step.compensation == "withdrawn"
        tasks = stored(ehr, command, "task")
        assert [t["status"] for t in tasks] == ["cancelled"], "one Task, withdrawn: no orphan"
        assert [r["status"] for r in stored(ehr, command, "request")] == ["revoked"]
        described = await faults.get(f"/_admin/faults/{tenant}")
        assert described.json()["injected"].get("commit_then_drop") == 1


async def test_a_first_step_that_fails_leaves_nothing_to_undo(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    refuse_request = {**REFUSE_COMMUNICATION, "type": "ServiceRequest"}
    await faults.post("/_admin/faults/demo-r4", json={"queue": [refuse_request]})
    command = saga("demo-r4", key, samples.referral("saga-pt-4"))
    status = await run_saga(writeback, command)

    assert status.state is WriteState.REJECTED
    assert "step 'request'" in (status.reason or "")
    assert [step.state for step in status.steps] == [WriteState.REJECTED, None, None]
    assert stored(ehr, command, "request") == []


async def test_a_withdrawal_the_ehr_refuses_waits_for_a_person_with_the_whole_saga(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    """Acceptance 3 (workflow side): the sandbox refuses the ServiceRequest's status update; the
    saga parks in compensation_failed naming the resource and why, and a retry decision (once the
    EHR accepts it) finishes the compensation."""
    refuse_update = {"kind": "status", "status": 403, "method": "PUT", "type": "ServiceRequest"}
    await faults.post(
        "/_admin/faults/demo-r4", json={"queue": [REFUSE_COMMUNICATION, refuse_update]}
    )
    command = saga("demo-r4", key, samples.referral("saga-pt-5"))
    submission = await writeback.submit_saga(command)
    status = await writeback.wait(submission.workflow_id)

    assert status.state is WriteState.COMPENSATION_FAILED
    assert status.error_class == "compensation"
    request_ref = f"ServiceRequest/{stored(ehr, command, 'request')[0]['id']}"
    assert request_ref in (status.reason or "") and "authorization" in (status.reason or "")
    whole = await writeback.saga(submission.workflow_id)
    assert {step.name: step.compensation for step in whole.steps} == {
        "request": "failed",
        "task": "withdrawn",
        "notify": None,
    }

    with pytest.raises(DecisionRefused):
        await writeback.resolve(
            submission.workflow_id, decision(ResolutionAction.OVERRIDE), "d-override"
        )
    resolved = await writeback.resolve(
        submission.workflow_id, decision(ResolutionAction.RETRY), "d-retry"
    )
    assert resolved.state is WriteState.COMPENSATED
    assert [r["status"] for r in stored(ehr, command, "request")] == ["revoked"]


async def test_a_note_s_provenance_is_written_last_with_the_authority_it_ran_under(
    writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    """Provenance has no status: it cannot be withdrawn, so the saga writes it last even when
    it is listed first; it carries the note write's authorization (issue 8): the on-behalf-of
    user as agent, the note's command as entity, the policy rule that allowed it."""
    steps = samples.note_with_provenance("saga-pt-6", "synthetic", encounter="enc-saga-6")
    command = saga("demo-r4", key, list(reversed(steps)), kind="note-with-provenance")
    status = await run_saga(writeback, command)

    assert status.state is WriteState.VERIFIED, status.reason
    in_flight = next(t for t in status.transitions if t.state is WriteState.IN_FLIGHT)
    assert in_flight.detail == "order: note → provenance"
    note = stored(ehr, command, "note")[0]
    provenance = stored(ehr, command, "provenance")[0]
    assert provenance["target"] == [{"reference": f"DocumentReference/{note['id']}"}]
    assert provenance["meta"]["tag"][0]["system"] == COMMAND_IDENTIFIER_SYSTEM
    assert provenance["agent"][0]["who"] == {"reference": "Practitioner/dr-synthetic"}
    note_command = f"demo-r4:{command.step_key('note')}"
    assert provenance["entity"][0]["what"]["identifier"]["value"] == note_command
    assert provenance["policy"][0].startswith("urn:writeback:policy:allowed-callers@")


async def test_an_optional_provenance_is_skipped_where_the_tenant_takes_none(
    writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    steps = samples.note_with_provenance("saga-pt-9", "synthetic", encounter="enc-saga-9")
    command = saga("demo-epic", key, steps, kind="note-with-provenance")
    status = await run_saga(writeback, command)

    assert status.state is WriteState.VERIFIED, status.reason
    skipped = next(step for step in status.steps if step.name == "provenance")
    assert skipped.state is None and "skipped" in (skipped.detail or "")
    assert len(stored(ehr, command, "note")) == 1 and stored(ehr, command, "provenance") == []


async def test_what_a_create_only_tenant_cannot_withdraw_goes_to_a_person_with_an_instruction(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """Epic's API is create-only (docs/vendors.md): when the third reading of a panel is refused
    (here malformed), the two written before cannot be withdrawn through it; a person gets the exact
    instruction and settles the saga once it is done by hand (the confirm reads them back)."""
    first, second, third = samples.vitals_panel("saga-pt-10")
    broken = SagaStep(name=third.name, resource=third.resource | {"status": "not-a-status"})
    panel = saga("demo-epic", key, [first, second, broken], kind="vitals-panel")
    submission = await writeback.submit_saga(panel)
    parked = await writeback.wait(submission.workflow_id)

    assert parked.state is WriteState.COMPENSATION_FAILED, parked.reason
    assert "epic cannot withdraw a Observation through its API" in (parked.reason or "")
    assert "then resolve this saga with 'confirm'" in (parked.reason or "")
    assert [r["status"] for r in stored(ehr, panel, "heart-rate")] == ["final"]
    for step in (await writeback.saga(submission.workflow_id)).steps[:2]:
        await changed_by_hand(faults, "demo-epic", str(step.resource), status="entered-in-error")
    done = await writeback.resolve(
        submission.workflow_id, decision(ResolutionAction.CONFIRM), "d-confirm"
    )
    assert done.state is WriteState.COMPENSATED
    whole = await writeback.saga(submission.workflow_id)
    assert [step.compensation for step in whole.steps] == ["withdrawn_by_hand"] * 2 + [None]


async def test_a_vitals_panel_is_all_or_compensated(
    writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    command = saga("demo-cerner", key, samples.vitals_panel("saga-pt-7"), kind="vitals-panel")
    assert (await run_saga(writeback, command)).state is WriteState.VERIFIED

    # the third reading is malformed: rejected by validation, after two were written
    first, second, third = samples.vitals_panel("saga-pt-8")
    broken = SagaStep(name=third.name, resource=third.resource | {"status": "not-a-status"})
    failing = saga("demo-cerner", f"{key}-b", [first, second, broken], kind="vitals-panel")
    status = await run_saga(writeback, failing)

    assert status.state is WriteState.COMPENSATED, status.reason
    assert [r["status"] for r in stored(ehr, failing, "heart-rate")] == ["entered-in-error"]
    assert [r["status"] for r in stored(ehr, failing, "blood-pressure")] == ["entered-in-error"]
    assert stored(ehr, failing, "temperature") == []
