"""Vendor adapters end to end on the time-skipping server against the real sandbox: a vital sign and
a clinical note end verified on every personality (athena and Veradigm through their proprietary
APIs), and each vendor quirk the sandbox implements is handled (docs/vendors.md)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from support.activities import activity_environment
from support.audit import resources_for_patient
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command, run_to_end
from temporalio.exceptions import ApplicationError

from activities.ehr_client import EhrClient
from activities.ehr_writes import EhrWrites
from activities.models import EhrWrite
from adapters.fhir_r4 import prepare_create
from adapters.tenants import TenantRegistry
from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteState

FIVE_VENDORS = ["demo-r4", "demo-epic", "demo-cerner", "demo-athena", "demo-veradigm"]
ATHENA_PRACTICE = {"ah-practice": "Organization/a-1.Practice-195900"}
DROP_ON_CREATE = {"kind": "commit_then_drop", "method": "POST"}

Canonical = Callable[[str], dict[str, Any]]
CANONICAL: dict[str, Canonical] = {
    "heart_rate": lambda patient: samples.heart_rate(patient, 71),
    "blood_pressure": lambda patient: samples.blood_pressure(patient, 128, 82),
    "note": lambda patient: samples.clinical_note(patient, "Seen today. Plan: recheck.", "enc-1"),
}


def new_patient() -> str:
    return f"v-{uuid.uuid4().hex[:10]}"


async def read_back(http: httpx.AsyncClient, tenant: str, reference: str) -> dict[str, Any]:
    params = ATHENA_PRACTICE if tenant == "demo-athena" else {}
    response = await http.get(f"/fhir/{tenant}/{reference}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("kind", sorted(CANONICAL))
@pytest.mark.parametrize("tenant", FIVE_VENDORS)
async def test_canonical_vital_and_note_end_verified_on_every_vendor(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    tenant: str,
    kind: str,
    key: str,
) -> None:
    """Acceptance 1: the same canonical command ends verified on all five personalities; athena
    and Veradigm through their proprietary endpoints (their FHIR refuses writes), read back over
    FHIR at the reference the adapter mapped the vendor's answer to."""
    patient = new_patient()
    cmd = command(tenant, key, CANONICAL[kind](patient))
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED, status.reason
    assert status.resource is not None
    stored = await read_back(faults, tenant, status.resource)
    assert stored["subject"] == {"reference": f"Patient/{patient}"}
    assert resources_for_patient(ehr.db, tenant, f"Patient/{patient}") == 1
    if tenant == "demo-athena":
        prefix = "a-195900.vitals-" if kind != "note" else "a-195900.clinicaldocument-"
        assert stored["id"].startswith(prefix)  # made by the chart API, not FHIR create
    if tenant == "demo-veradigm":
        assert stored["id"].startswith("note-" if kind == "note" else "vitals-")


@pytest.mark.parametrize("tenant", ["demo-athena", "demo-veradigm"])
async def test_lost_answer_from_a_proprietary_api_never_duplicates(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    tenant: str,
    key: str,
) -> None:
    """athenaOne and Unity take no idempotency key and keep no identifier of ours (docs/vendors.md
    replay row): after a committed write whose answer was lost, nothing is sent again: a search
    by its content fingerprint over FHIR finds the record, counted as the only copy."""
    # a first write, so that Veradigm's Unity token is cached and the drop hits the MagicJson call
    warm_up = await run_to_end(writeback, command(tenant, f"{key}-0", CANONICAL["note"]("w")))
    assert warm_up.state is WriteState.VERIFIED
    patient = new_patient()
    await faults.post(f"/_admin/faults/{tenant}", json={"queue": [DROP_ON_CREATE]})
    cmd = command(tenant, key, samples.heart_rate(patient, 64))
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED, status.reason
    assert status.ehr_log[0].outcome.startswith("ambiguous")
    assert status.attempts == 1
    assert status.ehr_log[1].step == "locate" and "found" in status.ehr_log[1].outcome
    assert status.copies == 1
    assert resources_for_patient(ehr.db, tenant, f"Patient/{patient}") == 1


async def test_athena_converts_celsius_into_the_unit_it_records(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    """athenaOne records body temperature in [degF]: the adapter sends 98.96 for 37.2 Cel and
    verification expects what athena's FHIR shows, so the write ends verified."""
    cmd = command("demo-athena", key, samples.body_temperature(new_patient(), 37.2))
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED, status.reason
    assert status.resource is not None
    stored = await read_back(faults, "demo-athena", status.resource)
    assert stored["valueQuantity"]["value"] == 98.96
    assert stored["valueQuantity"]["code"] == "[degF]"


async def test_athena_unit_it_cannot_convert_is_rejected_before_any_call(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    """A unit the adapter does not convert (height in inches) is refused at the map step, naming
    the field and athena's unit; nothing reaches the EHR."""
    height = samples.body_temperature(new_patient(), 70)
    height["code"] = {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]}
    height["valueQuantity"] = {**height["valueQuantity"], "unit": "[in_i]", "code": "[in_i]"}
    before = (await faults.get("/_admin/stats/demo-athena")).json()["total"]
    status = await run_to_end(writeback, command("demo-athena", key, height))

    assert status.state is WriteState.REJECTED
    assert status.error_class == "validation"
    assert "valueQuantity.code" in (status.reason or "") and "cm" in (status.reason or "")
    assert (await faults.get("/_admin/stats/demo-athena")).json()["total"] == before


async def test_unity_refusing_the_cached_token_gets_a_new_one(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """Unity tokens expire (a reset forgets them here): MagicJson answers an Error about the
    token with HTTP 200, and the adapter fetches a new token once and writes."""
    await run_to_end(
        writeback, command("demo-veradigm", key, samples.heart_rate(new_patient(), 60))
    )
    await faults.post("/_admin/reset/demo-veradigm")  # forgets every Unity token
    patient = new_patient()
    cmd = command("demo-veradigm", f"{key}-2", samples.heart_rate(patient, 61))
    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED, status.reason
    assert resources_for_patient(ehr.db, "demo-veradigm", f"Patient/{patient}") == 1


async def test_unity_refusing_the_credentials_is_an_authorization_failure_naming_the_fix(
    tenants: TenantRegistry, ehr: SandboxProcess, key: str
) -> None:
    """GetToken answers ``error: ...`` as text (here: no username configured): the write step
    fails as a non-retryable authorization failure naming the tenant settings to fix, and
    nothing is stored. (The write activity against the real sandbox, with a tenant copy.)"""
    veradigm = tenants.get("demo-veradigm")
    assert veradigm is not None and veradigm.vendor_api is not None
    no_user = veradigm.vendor_api.model_copy(update={"username": None})
    misconfigured = veradigm.model_copy(update={"vendor_api": no_user})
    patient = new_patient()
    request = prepare_create(misconfigured, samples.heart_rate(patient, 60), f"t:{key}")

    async with httpx.AsyncClient() as http:
        steps = EhrWrites(EhrClient(TenantRegistry([misconfigured], source="test"), http))
        order = EhrWrite(tenant=misconfigured.id, request_id=f"{key}/write/1", request=request)
        with pytest.raises(ApplicationError) as failure:
            await activity_environment().run(steps.write, order)

    assert failure.value.type == "authorization" and failure.value.non_retryable
    assert "vendor_api.username" in failure.value.message
    assert resources_for_patient(ehr.db, "demo-veradigm", f"Patient/{patient}") == 0
