"""The chaos audit's own rules, on a real sandbox file: what counts as a duplicate (live copies by
command identifier or by clinical content), and a write reported verified beside duplicates; and
the plan's readings, which must all be valid when they are sent."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from chaos_audit import Verdicts, _create
from chaos_plan import TENANTS, Planned, Seeded, Slot, commands, layout, pick_tenants
from chaos_trails import Trails
from support.audit import load_chart, versions
from support.sandbox_process import SandboxProcess

from workers import samples
from workflows.contract import WriteCommand, WriteState, WriteStatus

FHIR, ATHENA = TENANTS[0], next(t for t in TENANTS if t.personality == "athena")
WHEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


@pytest.fixture
def ehr(tmp_path: Path) -> Iterator[SandboxProcess]:
    sp = SandboxProcess(
        tmp_path / "ehr.db", tmp_path / "ehr.log", "--personality", f"{ATHENA.id}=athena"
    )
    yield sp
    sp.stop()


def _post(http: httpx.Client, resource: dict[str, object]) -> str:
    created = http.post(f"/fhir/{FHIR.id}/Observation", json=resource)
    assert created.status_code == 201
    return f"Observation/{created.json()['id']}"


def _athena_reading(http: httpx.Client, patient: str, bpm: int) -> str:
    taken = "03/04/2026 05:06:07"
    group = [{"clinicalelementid": "VITALS.HEARTRATE", "value": bpm, "readingtaken": taken}]
    form = {"departmentid": "1", "returnvitalids": "true", "vitals": json.dumps([group])}
    answer = http.post(f"/athena/{ATHENA.id}/v1/195900/chart/{patient}/vitals", data=form).json()
    return f"Observation/a-195900.vitals-{answer['vitalids'][0]['vitalid']}"


def test_copies_by_identifier_count_only_live_ones(ehr: SandboxProcess) -> None:
    resource = samples.heart_rate("p1", 70)
    command = WriteCommand(tenant=FHIR.id, idempotency_key="k1", resource=resource)
    mark = {"system": "urn:writeback:command", "value": command.command_identifier}
    ours = {**resource, "identifier": [mark]}
    with httpx.Client(base_url=ehr.url) as http:
        first, second = _post(http, ours), _post(http, ours)
        withdrawn = _post(http, ours)
        body = http.get(f"/fhir/{FHIR.id}/{withdrawn}").json()
        http.put(f"/fhir/{FHIR.id}/{withdrawn}", json={**body, "status": "entered-in-error"})
        _post(http, samples.heart_rate("p1", 71))  # someone else's reading of the same patient
    chart = load_chart(ehr.db, FHIR.id)
    assert chart.copies(command.command_identifier, command.resource) == sorted([first, second])
    assert [v.get("status") for v in versions(ehr.db, FHIR.id, withdrawn)] == [
        "final",
        "entered-in-error",
    ]


def test_copies_by_clinical_content_where_the_vendor_keeps_no_identifier(
    ehr: SandboxProcess,
) -> None:
    """athenaOne stores its own projection (no identifier, no display, 'Z' times): the same
    reading for the same patient is still the same command's copy."""
    resource = samples.heart_rate("p2", 64, WHEN)  # '+00:00', a display: not what athena stores
    with httpx.Client(base_url=ehr.url) as http:
        copies = sorted([_athena_reading(http, "p2", 64), _athena_reading(http, "p2", 64)])
        _athena_reading(http, "p2", 65)  # another value
        _athena_reading(http, "p3", 64)  # another patient
    chart = load_chart(ehr.db, ATHENA.id)
    assert chart.copies("athena-keeps-no-identifier", resource) == copies


async def test_verified_beside_duplicates_is_unexplained(ehr: SandboxProcess) -> None:
    command = WriteCommand(
        tenant=ATHENA.id, idempotency_key="k3", resource=samples.heart_rate("p4", 80, WHEN)
    )
    with httpx.Client(base_url=ehr.url) as http:
        first, _ = _athena_reading(http, "p4", 80), _athena_reading(http, "p4", 80)
    chart = load_chart(ehr.db, ATHENA.id)
    status = WriteStatus(
        workflow_id=command.workflow_id, tenant=ATHENA.id, state=WriteState.VERIFIED, resource=first
    )
    planned = Planned(Slot(3, ATHENA, "create"), command)
    async with httpx.AsyncClient(base_url=ehr.url) as http:
        trails = Trails(http, [ATHENA.id])
        await trails.collect()
        verdicts = Verdicts()
        _create(planned, status, chart, verdicts, set(), trails)
    assert len(verdicts.duplicates) == 1 and "2 live copies" in verdicts.duplicates[0]
    unexplained = f"{command.workflow_id}: reported verified while 2 copies exist"
    assert verdicts.unexplained == [unexplained]
    assert verdicts.lost == []


def test_every_planned_reading_is_taken_before_the_run_starts() -> None:
    """A 10,000-write plan spans 10,000 s of readings: none may lie in the future, or the
    product rightly rejects it and the run counts a planned-valid write as rejected."""
    tenants = pick_tenants(None)
    slots = layout(
        10_000,
        tenants,
        random.Random(7),
        invalid_share=0.0,
        update_share=0.0,
        saga_share=0.0,
        crowded_patients=0,
    )
    planned = commands(slots, Seeded(), "plan")
    times = [
        datetime.fromisoformat(p.command.resource["effectiveDateTime"])
        for p in planned
        if isinstance(p.command, WriteCommand)
    ]
    assert len(times) == 10_000
    assert max(times) < datetime.now(UTC)
