"""A FHIR transaction Bundle, translated (workers/api/bundles.py), run as a real ClinicalSaga on
the time-skipping server against the sandbox EHR, and answered (workers/api/bundle_responses.py):
the chart holds resources whose references are the ids the EHR gave the earlier entries, and the
transaction-response says, entry by entry, what was created, or what failed and was withdrawn."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.audit import current_resources_for_command
from support.sandbox_process import SandboxProcess
from support.workflow_runs import result_of

from activities.crosswalk_store import CROSSWALK_URL_ENV
from adapters.tenants import TenantRegistry
from workers.api.bundle_responses import transaction_response
from workers.api.bundles import saga_of_transaction
from workers.client import WritebackClient
from workflows.clinical_saga import ClinicalSaga
from workflows.contract import WriteState
from workflows.saga_contract import SagaCommand, SagaStatus

TENANT = "demo-r4"
REQUEST_URL = f"urn:uuid:{uuid.uuid4()}"
TASK_URL = f"urn:uuid:{uuid.uuid4()}"
REFUSE_COMMUNICATION = {"kind": "status", "status": 422, "method": "POST", "type": "Communication"}


@pytest.fixture(autouse=True)
def crosswalk_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The worker's crosswalk store, the test's own (autouse: set before the worker starts)."""
    path = tmp_path / "crosswalk.db"
    monkeypatch.setenv(CROSSWALK_URL_ENV, str(path))
    return path


async def seed_patient(ehr: SandboxProcess, internal_id: str, system: str) -> str:
    """A Patient registered in the EHR with our internal id; returns the EHR's id for it."""
    patient = {"resourceType": "Patient", "identifier": [{"system": system, "value": internal_id}]}
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/{TENANT}") as fhir:
        response = await fhir.post(
            "/Patient", json=patient, headers={"Content-Type": "application/fhir+json"}
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def referral_bundle(patient: str) -> dict[str, Any]:
    """ServiceRequest → Task (focus: the request) → Communication (about both); the request's
    subject is a conditional reference, the others refer to the request by its fullUrl."""

    def post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
        entry = {
            "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]},
        }
        return {**entry, "fullUrl": full_url} if full_url else entry

    org = {"reference": "Organization/org-cardiology"}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            post(
                {
                    "resourceType": "ServiceRequest",
                    "status": "active",
                    "intent": "order",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "306206005"}]},
                    "subject": {"reference": patient},
                    "performer": [org],
                },
                REQUEST_URL,
            ),
            post(
                {
                    "resourceType": "Task",
                    "status": "requested",
                    "intent": "order",
                    "focus": {"reference": REQUEST_URL},
                    "for": {"reference": "Patient/bundle-pt-1"},
                    "owner": org,
                },
                TASK_URL,
            ),
            post(
                {
                    "resourceType": "Communication",
                    "status": "completed",
                    "subject": {"reference": "Patient/bundle-pt-1"},
                    "about": [{"reference": REQUEST_URL}, {"reference": TASK_URL}],
                    "recipient": [org],
                    "payload": [{"contentString": "New referral: see the linked task."}],
                }
            ),
        ],
    }


def translated(tenants: TenantRegistry, bundle: dict[str, Any], key: str) -> SagaCommand:
    tenant = tenants.get(TENANT)
    assert tenant is not None
    return saga_of_transaction(
        TENANT,
        bundle,
        key,
        requested_by="referrals-svc",
        crosswalk=tenant.crosswalk,
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


async def test_a_transaction_bundle_lands_linked_by_the_ids_the_ehr_gave_its_entries(
    writeback: WritebackClient, ehr: SandboxProcess, tenants: TenantRegistry, key: str
) -> None:
    tenant = tenants.get(TENANT)
    assert tenant is not None
    ours = f"int-{uuid.uuid4().hex[:12]}"
    patient_id = await seed_patient(ehr, ours, tenant.crosswalk.identifier_system)
    conditional = f"Patient?identifier={tenant.crosswalk.identifier_system}|{ours}"
    command = translated(tenants, referral_bundle(conditional), key)
    status = await run_saga(writeback, command)

    assert status.state is WriteState.VERIFIED, status.reason
    (request,), (task,), (notify,) = (stored(ehr, command, name) for name in ("e0", "e1", "e2"))
    request_ref, task_ref = f"ServiceRequest/{request['id']}", f"Task/{task['id']}"
    assert request["subject"] == {"reference": f"Patient/{patient_id}"}
    assert task["focus"] == {"reference": request_ref}
    assert notify["about"] == [{"reference": request_ref}, {"reference": task_ref}]

    answer = transaction_response(status)
    assert answer["type"] == "transaction-response"
    expected = [
        (f"{r['resourceType']}/{r['id']}", r["meta"]["versionId"]) for r in (request, task, notify)
    ]
    assert [entry["response"] for entry in answer["entry"]] == [
        {"status": "201 Created", "location": f"{ref}/_history/{v}", "etag": f'W/"{v}"'}
        for ref, v in expected
    ]


async def test_a_rejected_entry_withdraws_the_earlier_ones_and_the_response_says_so(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    tenants: TenantRegistry,
    key: str,
) -> None:
    await faults.post(f"/_admin/faults/{TENANT}", json={"queue": [REFUSE_COMMUNICATION]})
    command = translated(tenants, referral_bundle("Patient/bundle-pt-2"), key)
    status = await run_saga(writeback, command)

    assert status.state is WriteState.COMPENSATED, status.reason
    (request,), (task,) = stored(ehr, command, "e0"), stored(ehr, command, "e1")
    assert (request["status"], task["status"]) == ("revoked", "cancelled")
    assert stored(ehr, command, "e2") == []

    request_answer, task_answer, notify_answer = (
        entry["response"] for entry in transaction_response(status)["entry"]
    )
    assert notify_answer["status"] == "422 Unprocessable Entity"
    (failure,) = notify_answer["outcome"]["issue"]
    assert failure["expression"] == ["Bundle.entry[2]"]
    assert "ended rejected (error class validation)" in failure["diagnostics"]
    for answer, resource in ((request_answer, request), (task_answer, task)):
        assert answer["status"] == "424 Failed Dependency"
        assert answer["location"].startswith(f"{resource['resourceType']}/{resource['id']}/")
        (withdrawn,) = answer["outcome"]["issue"]
        assert "was withdrawn (read back) after Bundle.entry[2] failed" in withdrawn["diagnostics"]
