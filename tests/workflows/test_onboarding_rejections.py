"""Writes that must end ``rejected`` before anything is written: a wrong unit, a future clinical
time, a missing identity mapping, a missing or mismatched encounter. The sandbox's request
counter proves that no write (and, for the pure checks, no request at all) reached the EHR."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.audit import resources_for_command
from support.postgres import postgres_server
from support.sandbox_process import SandboxProcess
from support.workers import running_worker
from support.workflow_runs import command, run_to_end
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from activities.crosswalk import IDENTIFIER_SEARCH
from activities.crosswalk_store import CROSSWALK_URL_ENV, SqliteCrosswalk, open_crosswalk
from adapters.tenants import Tenant, TenantRegistry
from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteState

INTERNAL_SYSTEM = "urn:writeback:internal-id"
STRICT = "strict-enc"  # a tenant whose policy requires an encounter on every write
PINNED_V1 = "pinned-v1"  # a tenant still pinned to adapter version 1 (no clinical semantics)


@pytest.fixture
def crosswalk_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "crosswalk.db"
    monkeypatch.setenv(CROSSWALK_URL_ENV, str(path))
    return path


@pytest.fixture
async def onboarding(
    time_skipping: WorkflowEnvironment,
    tenants: TenantRegistry,
    ehr: SandboxProcess,
    crosswalk_db: Path,
) -> AsyncIterator[WritebackClient]:
    r4 = tenants.get("demo-r4")
    assert r4 is not None
    strict = Tenant.model_validate(
        {**r4.model_dump(), "id": STRICT, "fhir_base_url": f"{ehr.url}/fhir/{STRICT}"}
        | {"require_encounter": True}
    )
    pinned = Tenant.model_validate(
        {**r4.model_dump(), "id": PINNED_V1, "fhir_base_url": f"{ehr.url}/fhir/{PINNED_V1}"}
        | {"adapter_version": "1"}
    )
    registry = TenantRegistry([*tenants, strict, pinned], source="test")
    async with running_worker(time_skipping.client, registry) as client:
        yield client


async def requests_seen(ehr: SandboxProcess, tenant: str) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=ehr.url) as admin:
        stats = (await admin.get(f"/_admin/stats/{tenant}")).json()
    return {"total": stats["total"], **stats["by_method"]}


async def seed(ehr: SandboxProcess, tenant: str, resource: dict[str, Any]) -> str:
    """Put a record into the EHR as its own registration would; returns its tenant id."""
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/{tenant}") as fhir:
        response = await fhir.post(
            f"/{resource['resourceType']}",
            json=resource,
            headers={"Content-Type": "application/fhir+json"},
        )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def patient_with_internal_id(internal_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": INTERNAL_SYSTEM, "value": internal_id}],
    }


def encounter_with_internal_id(internal_id: str, start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "identifier": [{"system": INTERNAL_SYSTEM, "value": internal_id}],
        "period": {"start": start.isoformat(), "end": end.isoformat()},
    }


def internal_id() -> str:
    return f"int-{uuid.uuid4().hex[:12]}"


# --- no EHR request at all: the pure checks --------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r, now: r["valueQuantity"].update(code="kg", unit="kg"), "valueQuantity.code"),
        (
            # "the future" is the workflow's clock, which the test server skips ahead
            lambda r, now: r.update(effectiveDateTime=(now + timedelta(days=1)).isoformat()),
            "effectiveDateTime",
        ),
        (lambda r, now: r["valueQuantity"].update(value=720), "valueQuantity.value"),
    ],
    ids=["wrong-unit", "future-effective-time", "implausible-value"],
)
async def test_clinically_wrong_write_is_rejected_without_any_ehr_request(
    onboarding: WritebackClient,
    time_skipping: WorkflowEnvironment,
    ehr: SandboxProcess,
    key: str,
    change: Any,
    field: str,
) -> None:
    resource = samples.heart_rate("wf-test", 72)
    change(resource, await time_skipping.get_current_time())
    before = await requests_seen(ehr, "demo-r4")
    status = await run_to_end(onboarding, command("demo-r4", key, resource))

    assert status.state is WriteState.REJECTED
    assert status.error_class == "validation"
    assert status.reason and status.reason.startswith(f"{field}: ")
    assert status.attempts == 0
    assert await requests_seen(ehr, "demo-r4") == before


async def test_tenant_requiring_an_encounter_rejects_a_write_without_one(
    onboarding: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    before = await requests_seen(ehr, STRICT)
    status = await run_to_end(onboarding, command(STRICT, key, samples.heart_rate("p", 72)))

    assert status.state is WriteState.REJECTED
    assert status.reason == "encounter: this tenant requires an encounter reference"
    assert await requests_seen(ehr, STRICT) == before


# --- identity crosswalk ------------------------------------------------------------------------


async def test_crosswalk_miss_is_rejected_with_an_actionable_reason_and_no_write(
    onboarding: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    before = await requests_seen(ehr, "demo-r4")
    resource = samples.heart_rate(f"internal:{internal_id()}", 72)
    cmd = command("demo-r4", key, resource)
    status = await run_to_end(onboarding, cmd)

    assert status.state is WriteState.REJECTED
    assert status.error_class == "unmapped"
    assert status.reason and status.reason.startswith("subject: no Patient in tenant 'demo-r4'")
    assert "writeback tenants map demo-r4 Patient" in status.reason
    assert "int-" not in status.reason  # the id itself stays out of the reason
    after = await requests_seen(ehr, "demo-r4")
    assert after.get("POST", 0) == before.get("POST", 0)
    assert after.get("PUT", 0) == before.get("PUT", 0)
    assert after["total"] == before["total"] + 1  # the one identifier search
    assert resources_for_command(ehr.db, "demo-r4", cmd.command_identifier) == 0


async def test_two_tenant_records_for_one_internal_id_are_not_guessed(
    onboarding: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    ours = internal_id()
    for _ in range(2):
        await seed(ehr, "demo-r4", patient_with_internal_id(ours))
    status = await run_to_end(
        onboarding, command("demo-r4", key, samples.heart_rate(f"internal:{ours}", 72))
    )
    assert status.state is WriteState.REJECTED
    assert status.error_class == "unmapped"
    assert status.reason and status.reason.startswith("subject: 2 Patient in tenant")


async def crosswalk_results(client: WritebackClient, history: Any) -> list[dict[str, Any]]:
    """The crosswalk activity's results, from the workflow history (decoded with the client's
    converter: payloads are encrypted)."""
    scheduled = {
        event.event_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and event.activity_task_scheduled_event_attributes.activity_type.name == "crosswalk"
    }
    payloads = [
        attrs.result.payloads[0]
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and (attrs := event.activity_task_completed_event_attributes).scheduled_event_id
        in scheduled
    ]
    return list(await client.temporal.data_converter.decode(payloads)) if payloads else []


async def test_internal_patient_is_found_by_identifier_stored_with_provenance_then_reused(
    onboarding: WritebackClient, ehr: SandboxProcess, crosswalk_db: Path
) -> None:
    ours = internal_id()
    tenant_id = await seed(ehr, "demo-r4", patient_with_internal_id(ours))
    first = command(
        "demo-r4", f"t-{uuid.uuid4().hex[:12]}", samples.heart_rate(f"internal:{ours}", 72)
    )
    status = await run_to_end(onboarding, first)
    assert status.state is WriteState.VERIFIED
    details = await onboarding.details(status.workflow_id)
    assert details.sent and details.sent["subject"] == {"reference": f"Patient/{tenant_id}"}

    mapping = SqliteCrosswalk(crosswalk_db).get("demo-r4", "Patient", ours)
    assert mapping is not None
    assert (mapping.tenant_id, mapping.source) == (tenant_id, IDENTIFIER_SEARCH)
    assert mapping.lookup == f"GET Patient?identifier={INTERNAL_SYSTEM}|<internal id>"

    second = command(
        "demo-r4", f"t-{uuid.uuid4().hex[:12]}", samples.heart_rate(f"internal:{ours}", 80)
    )
    status = await run_to_end(onboarding, second)
    assert status.state is WriteState.VERIFIED
    history = await onboarding.temporal.get_workflow_handle(status.workflow_id).fetch_history()
    (result,) = await crosswalk_results(onboarding, history)
    assert (result["from_store"], result["learned"]) == (1, 0)


async def test_tenant_ids_pass_through_without_a_crosswalk_step(
    onboarding: WritebackClient, key: str
) -> None:
    status = await run_to_end(onboarding, command("demo-r4", key, samples.heart_rate("p-7", 72)))
    assert status.state is WriteState.VERIFIED
    history = await onboarding.temporal.get_workflow_handle(status.workflow_id).fetch_history()
    assert await crosswalk_results(onboarding, history) == []


async def test_effective_time_outside_the_internal_encounter_is_rejected_before_writing(
    onboarding: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    patient, visit = internal_id(), internal_id()
    await seed(ehr, STRICT, patient_with_internal_id(patient))
    yesterday = datetime.now(UTC) - timedelta(days=1)
    await seed(
        ehr, STRICT, encounter_with_internal_id(visit, yesterday, yesterday + timedelta(hours=1))
    )
    resource = samples.heart_rate(f"internal:{patient}", 72)  # taken now, after the visit
    resource["encounter"] = {"reference": f"Encounter/internal:{visit}"}
    before = await requests_seen(ehr, STRICT)
    cmd = command(STRICT, key, resource)
    status = await run_to_end(onboarding, cmd)

    assert status.state is WriteState.REJECTED
    assert status.reason == "effectiveDateTime: is after the encounter ended"
    after = await requests_seen(ehr, STRICT)
    assert after.get("POST", 0) == before.get("POST", 0)
    assert resources_for_command(ehr.db, STRICT, cmd.command_identifier) == 0


async def test_write_inside_the_internal_encounter_is_verified_with_tenant_references(
    onboarding: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    patient, visit = internal_id(), internal_id()
    patient_id = await seed(ehr, STRICT, patient_with_internal_id(patient))
    now = datetime.now(UTC)
    visit_id = await seed(
        ehr,
        STRICT,
        encounter_with_internal_id(visit, now - timedelta(hours=1), now + timedelta(hours=1)),
    )
    resource = samples.heart_rate(f"internal:{patient}", 72)
    resource["encounter"] = {"reference": f"Encounter/internal:{visit}"}
    status = await run_to_end(onboarding, command(STRICT, key, resource))

    assert status.state is WriteState.VERIFIED, status.reason
    details = await onboarding.details(status.workflow_id)
    assert details.sent is not None
    assert details.sent["subject"]["reference"] == f"Patient/{patient_id}"
    assert details.sent["encounter"]["reference"] == f"Encounter/{visit_id}"


async def test_tenant_pinned_to_adapter_v1_keeps_the_old_rules_until_its_pin_moves(
    onboarding: WritebackClient, key: str
) -> None:
    resource = samples.heart_rate("p", 72)
    resource["valueQuantity"]["value"] = 720  # implausible: adapter v2 rejects it
    status = await run_to_end(onboarding, command(PINNED_V1, key, resource))
    assert status.state is WriteState.VERIFIED
    status = await run_to_end(onboarding, command("demo-r4", key, resource))
    assert status.state is WriteState.REJECTED
    assert status.reason and status.reason.startswith("valueQuantity.value: outside")


async def test_crosswalk_on_postgresql_learns_and_reuses_a_mapping(
    time_skipping: WorkflowEnvironment,
    tenants: TenantRegistry,
    ehr: SandboxProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours = internal_id()
    tenant_id = await seed(ehr, "demo-r4", patient_with_internal_id(ours))
    with postgres_server(tmp_path) as uri:
        monkeypatch.setenv(CROSSWALK_URL_ENV, uri)
        async with running_worker(time_skipping.client, tenants) as client:
            for bpm in (70, 75):
                resource = samples.heart_rate(f"internal:{ours}", bpm)
                cmd = command("demo-r4", f"t-{uuid.uuid4().hex[:12]}", resource)
                status = await run_to_end(client, cmd)
                assert status.state is WriteState.VERIFIED, status.reason
        mapping = open_crosswalk(uri).get("demo-r4", "Patient", ours)
        history = await client.temporal.get_workflow_handle(status.workflow_id).fetch_history()
    assert mapping is not None and (mapping.tenant_id, mapping.source) == (
        tenant_id,
        IDENTIFIER_SEARCH,
    )
    (result,) = await crosswalk_results(client, history)
    assert (result["from_store"], result["learned"]) == (1, 0)
