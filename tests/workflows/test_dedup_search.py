"""Dedup searches that work, on the time-skipping server against the real sandbox: a fingerprint
search reads every page, recognises a copy the EHR rewrote (72.0 for 72, another time zone), and a
search whose server silently drops the identifier makes the write fail instead of deduplicating
against a wrong answer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from support.audit import resources_for_command, resources_for_patient
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command, run_to_end, wait_until_settled
from temporalio.testing import WorkflowEnvironment

from adapters.fhir_r4 import prepare_create
from adapters.tenants import TenantRegistry
from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteState

#: More than one page of the fingerprint search (``_count=200``), all of the same vital sign.
EARLIER_READINGS = 230


def new_patient() -> str:
    return f"dd-{uuid.uuid4().hex[:10]}"


def reading_time(minutes_ago: int) -> datetime:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).replace(microsecond=0)


@pytest.fixture
async def sandbox_admin(faults: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The admin client; the tenants whose sandbox settings a test changes are put back after."""
    yield faults
    await faults.post("/_admin/tenants/drops-ids", json={"allowed_identifier_systems": None})
    await faults.post("/_admin/tenants/demo-athena", json={"personality": "athena"})


async def seed(http: httpx.AsyncClient, tenant: str, resources: list[dict[str, Any]]) -> list[str]:
    """Store ``resources`` through the sandbox's FHIR API (one batch), in this order; their ids."""
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in resources
        ],
    }
    response = await http.post(f"/fhir/{tenant}", json=batch)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert all(e["response"]["status"].startswith("201") for e in entries)
    return [e["response"]["location"].split("/")[1] for e in entries]


def earlier_readings(patient: str) -> list[dict[str, Any]]:
    """An inpatient's heart rate every few minutes: the same code as the write, other values."""
    return [
        samples.heart_rate(patient, 60 + i % 30, when=reading_time(600 - 2 * i))
        for i in range(EARLIER_READINGS)
    ]


@pytest.mark.parametrize("tenant", ["drops-ids", "demo-athena"])
async def test_fingerprint_search_finds_our_copy_past_the_first_page(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    sandbox_admin: httpx.AsyncClient,
    tenants: TenantRegistry,
    tenant: str,
    key: str,
) -> None:
    """A patient with more Observations than one page of the fingerprint search holds, and a copy
    of this write (a lost answer's) stored after them: the write reads every page, finds the copy
    and creates no second one."""
    patient = new_patient()
    cmd = command(tenant, key, samples.heart_rate(patient, 77, when=reading_time(5)))
    request = prepare_create(tenants.get(tenant), cmd.resource, cmd.command_identifier)  # type: ignore[arg-type]
    # what the EHR keeps of an earlier attempt: no identifier of ours (athena: its projection)
    copy = request.expected or {k: v for k, v in request.body.items() if k != "identifier"}
    # athena's FHIR takes no writes: seed it as a plain R4 server, then give its personality back
    keeps_no_identifier = {"allowed_identifier_systems": []}
    settings = {"personality": "r4"} if tenant == "demo-athena" else keeps_no_identifier
    await sandbox_admin.post(f"/_admin/tenants/{tenant}", json=settings)
    *_, copy_id = await seed(sandbox_admin, tenant, [*earlier_readings(patient), copy])
    await sandbox_admin.post("/_admin/tenants/demo-athena", json={"personality": "athena"})

    status = await run_to_end(writeback, cmd)

    assert status.ehr_log[0].outcome.endswith("already present"), status.ehr_log
    assert status.resource == f"Observation/{copy_id}"
    assert status.state is WriteState.VERIFIED, status.reason
    assert resources_for_patient(ehr.db, tenant, f"Patient/{patient}") == EARLIER_READINGS + 1


async def test_a_copy_the_ehr_rewrote_is_recognised_as_ours(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    ehr: SandboxProcess,
    sandbox_admin: httpx.AsyncClient,
    key: str,
) -> None:
    """The EHR stored our earlier attempt as 72.0 instead of 72, in its own time zone, with its own
    unit text and display: the same reading, so the write takes it instead of writing another.
    (Read-back, which compares what we sent element by element, then asks a person.)"""
    patient = new_patient()
    when = reading_time(30)
    cmd = command("drops-ids", key, samples.heart_rate(patient, 72, when=when))
    rewritten = samples.heart_rate(patient, 72, when=when)
    rewritten["valueQuantity"] = {**rewritten["valueQuantity"], "value": 72.0, "unit": "beats/min"}
    rewritten["effectiveDateTime"] = when.astimezone(timezone(timedelta(hours=2))).isoformat()
    rewritten["code"]["coding"][0]["display"] = "Pulse rate"
    assert rewritten["effectiveDateTime"] != cmd.resource["effectiveDateTime"]
    await sandbox_admin.post("/_admin/tenants/drops-ids", json={"allowed_identifier_systems": []})
    [copy_id] = await seed(sandbox_admin, "drops-ids", [rewritten])

    await writeback.submit(cmd)
    status = await wait_until_settled(time_skipping, writeback, cmd.workflow_id)

    assert status.ehr_log[0].outcome.endswith("already present"), status.ehr_log
    assert status.resource == f"Observation/{copy_id}"
    assert resources_for_patient(ehr.db, "drops-ids", f"Patient/{patient}") == 1


@pytest.mark.parametrize("tenant", ["demo-cerner", "demo-epic"])
async def test_a_search_whose_server_drops_the_identifier_fails_the_write(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    sandbox_admin: httpx.AsyncClient,
    tenant: str,
    key: str,
) -> None:
    """Search-before-create on a server that does not know ``identifier`` and ignores
    ``Prefer: handling=strict``: it answers with every Observation it holds. The write fails as
    ``unsupported``, naming the ignored parameter, and writes nothing."""
    lenient = {"kind": "lenient_search", "method": "GET", "type": "Observation"}
    await sandbox_admin.post(f"/_admin/faults/{tenant}", json={"queue": [lenient]})
    cmd = command(tenant, key, samples.heart_rate(new_patient(), 70))

    status = await run_to_end(writeback, cmd)

    assert status.error_class == "unsupported", (status.state, status.reason)
    assert status.state is WriteState.REJECTED
    assert "'identifier'" in (status.reason or "")
    assert resources_for_command(ehr.db, tenant, cmd.command_identifier) == 0
    injected = (await sandbox_admin.get(f"/_admin/faults/{tenant}")).json()["injected"]
    assert injected == {"lenient_search": 1}
