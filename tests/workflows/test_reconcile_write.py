"""Per-write reconciliation on the time-skipping server: a verified write is read again after the
tenant's delay (24 h on ``reconcile-r4``) and ends ``reconciled``, or raises a ``mismatch`` that
says what happened in the EHR meanwhile."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command, wait_for_state
from temporalio.testing import WorkflowEnvironment

from workers import samples
from workers.client import DecisionRefused, WritebackClient
from workflows.contract import Resolution, ResolutionAction, WriteState, WriteStatus

TENANT = "reconcile-r4"


async def verified_write(client: WritebackClient, key: str) -> WriteStatus:
    submission = await client.submit(command(TENANT, key, samples.heart_rate("rec-pt", 64)))
    status = await client.wait(submission.workflow_id)
    assert status.state is WriteState.VERIFIED
    return status


async def edit_in_the_ehr(ehr: SandboxProcess, reference: str, change: dict[str, Any]) -> None:
    """What a clinician (or an interface) does in the EHR behind our back."""
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/{TENANT}") as fhir:
        current = (await fhir.get(reference)).json()
        answer = await fhir.put(reference, json={**current, **change})
        assert answer.status_code == 200


async def after_the_delay(
    env: WorkflowEnvironment, client: WritebackClient, workflow_id: str, state: WriteState
) -> WriteStatus:
    await env.sleep(timedelta(hours=24, minutes=1))
    return await wait_for_state(client, workflow_id, state)


async def mismatch_after_the_delay(
    env: WorkflowEnvironment, client: WritebackClient, workflow_id: str
) -> WriteStatus:
    return await after_the_delay(env, client, workflow_id, WriteState.MISMATCH)


async def test_an_untouched_write_ends_reconciled_after_the_delay(
    time_skipping: WorkflowEnvironment, writeback: WritebackClient, key: str
) -> None:
    status = await verified_write(writeback, key)
    final = await after_the_delay(
        time_skipping, writeback, status.workflow_id, WriteState.RECONCILED
    )

    assert final.state is WriteState.RECONCILED
    verified_at = next(t.at for t in final.transitions if t.state is WriteState.VERIFIED)
    reconciled_at = final.transitions[-1].at
    assert reconciled_at - verified_at >= timedelta(hours=24)


async def test_a_write_edited_in_the_ehr_meanwhile_raises_a_mismatch(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    ehr: SandboxProcess,
    key: str,
) -> None:
    status = await verified_write(writeback, key)
    assert status.resource is not None
    corrected = {"valueQuantity": {**samples.heart_rate("x", 65)["valueQuantity"]}}
    await edit_in_the_ehr(ehr, status.resource, corrected)

    raised = await mismatch_after_the_delay(time_skipping, writeback, status.workflow_id)
    assert raised.state is WriteState.MISMATCH
    assert raised.error_class == "mismatch"
    assert raised.reason and "changed in the EHR" in raised.reason
    assert "valueQuantity.value" in raised.reason
    details = await writeback.details(status.workflow_id)
    assert details.ehr_state and details.ehr_state["valueQuantity"]["value"] == 65

    with pytest.raises(DecisionRefused):
        await writeback.resolve(
            status.workflow_id,
            Resolution(action=ResolutionAction.RETRY, by="op-1", reason="rewrite"),
            "d-retry",
        )
    accepted = await writeback.resolve(
        status.workflow_id,
        Resolution(action=ResolutionAction.CONFIRM, by="op-1", reason="clinician corrected it"),
        "d-confirm",
    )
    assert accepted.state is WriteState.RECONCILED


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"status": "entered-in-error"}, "marked entered-in-error"),
        ({"subject": {"reference": "Patient/someone-else"}}, "re-linked in the EHR (subject"),
    ],
)
async def test_a_mismatch_says_what_happened_in_the_ehr(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    ehr: SandboxProcess,
    key: str,
    change: dict[str, Any],
    expected: str,
) -> None:
    status = await verified_write(writeback, key)
    assert status.resource is not None
    await edit_in_the_ehr(ehr, status.resource, change)

    raised = await mismatch_after_the_delay(time_skipping, writeback, status.workflow_id)
    assert raised.state is WriteState.MISMATCH
    assert expected in (raised.reason or "")


async def test_a_write_deleted_in_the_ehr_is_reported_gone(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    ehr: SandboxProcess,
    key: str,
) -> None:
    status = await verified_write(writeback, key)
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/{TENANT}") as fhir:
        assert (await fhir.delete(str(status.resource))).status_code == 204

    raised = await mismatch_after_the_delay(time_skipping, writeback, status.workflow_id)
    assert raised.state is WriteState.MISMATCH
    assert raised.error_class == "not_found"
    assert "gone from the EHR" in (raised.reason or "")
