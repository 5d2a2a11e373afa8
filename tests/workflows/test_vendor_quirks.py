"""One test per vendor quirk the sandbox implements (docs/vendors.md): the product handles it.
Quirks covered elsewhere: Cerner's 409 on a lost If-Match race and PUT starting from the latest
read (test_write_safety.py: ``test_a_race_lost_on_if_match_reads_again[demo-cerner-409]``,
``test_stale_version_with_disjoint_changes_is_merged[demo-cerner]``); Epic's empty-bodied,
relative-Location create and Cerner's ``Content-Length: 0`` create (every demo-epic / demo-cerner
write); athenaOne's ``ah-practice`` (every demo-athena read in test_vendors.py)."""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support.activities import activity_environment
from support.audit import resources_for_patient
from support.interleave import Interleave, edit_now, our_write_answers
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command, run_to_end
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.ehr_client import EhrClient
from activities.ehr_writes import EhrWrites
from activities.models import EhrWrite
from adapters.fhir_r4 import prepare_create
from adapters.tenants import TenantRegistry
from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteState


def new_patient() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"


async def tenant_settings(
    http: httpx.AsyncClient, tenant: str, **changes: Any
) -> AsyncIterator[None]:
    before = (await http.get(f"/_admin/tenants/{tenant}")).json()
    await http.post(f"/_admin/tenants/{tenant}", json=changes)
    yield
    await http.post(f"/_admin/tenants/{tenant}", json={k: before[k] for k in changes})


@pytest.fixture
async def epic_rejects_replayed_vitals(faults: httpx.AsyncClient) -> AsyncIterator[None]:
    async for _ in tenant_settings(faults, "demo-epic", rejects_duplicate_vitals=True):
        yield


async def file_reading(http: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    """The same reading filed by another source (a device feed, a nurse): no identifier of ours."""
    created = await http.post("/fhir/demo-epic/Observation", json=resource)
    assert created.status_code == 201, created.text
    return str(created.headers["Location"])


@pytest.mark.usefixtures("epic_rejects_replayed_vitals")
async def test_epic_reading_already_exists_is_taken_as_written(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """Epic answers a replayed vital sign with 400 / 59189 "Reading already exists"
    (docs/vendors.md, replay row): the product treats it as written, finds the reading and
    verifies it; the chart holds one reading, not a rejected write and not a duplicate."""
    patient = new_patient()
    reading = samples.heart_rate(patient, 77)
    location = await file_reading(faults, reading)
    status = await run_to_end(writeback, command("demo-epic", key, reading))

    assert status.state is WriteState.VERIFIED, status.reason
    assert status.resource == location
    assert "already present (HTTP 200)" in status.transitions[-2].detail  # type: ignore[operator]
    assert resources_for_patient(ehr.db, "demo-epic", f"Patient/{patient}") == 1


@pytest.mark.usefixtures("epic_rejects_replayed_vitals")
async def test_epic_different_reading_at_the_same_time_is_a_conflict(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """59189 for a reading whose value differs from ours: not ours to take as written, and not a
    retryable error either — a person decides."""
    patient = new_patient()
    theirs = samples.heart_rate(patient, 77)
    await file_reading(faults, theirs)
    ours = {**theirs, "valueQuantity": {**theirs["valueQuantity"], "value": 91}}
    cmd = command("demo-epic", key, ours)
    await writeback.submit(cmd)
    status = await writeback.wait(cmd.workflow_id)

    assert status.state is WriteState.CONFLICT
    assert "59189" in (status.reason or "")
    assert status.attempts == 1
    assert resources_for_patient(ehr.db, "demo-epic", f"Patient/{patient}") == 1


@pytest.mark.usefixtures("epic_rejects_replayed_vitals")
async def test_epic_59189_while_search_lags_is_ambiguous_not_a_conflict(
    tenants: TenantRegistry, faults: httpx.AsyncClient, key: str
) -> None:
    """Our earlier attempt committed (its answer lost) but Epic's search does not show it yet:
    the retry's search misses, the POST answers 59189, and the write step reports an ambiguous
    outcome — retried later, when search shows ours — never a conflict or a rejection. (The
    write activity itself, against the real sandbox: the index delay is real time.)"""
    cmd = command("demo-epic", key, samples.heart_rate(new_patient(), 80))
    epic = tenants.get("demo-epic")
    assert epic is not None
    request = prepare_create(epic, cmd.resource, cmd.command_identifier)
    await faults.post("/_admin/faults/demo-epic", json={"index_delay_seconds": 60})
    lost = await faults.post("/fhir/demo-epic/Observation", json=request.body)
    assert lost.status_code == 201  # what our lost attempt left, not searchable for a minute

    async with httpx.AsyncClient() as http:
        steps = EhrWrites(EhrClient(tenants, http))
        order = EhrWrite(tenant="demo-epic", request_id=f"{key}/write/2", request=request)
        with pytest.raises(ApplicationError) as failure:
            await activity_environment().run(steps.write, order)

    assert failure.value.type == "ambiguous" and not failure.value.non_retryable
    assert "59189" in failure.value.message


@pytest.mark.parametrize(
    ("note", "field"),
    [
        (lambda p: samples.clinical_note(p, "Seen today."), "context.encounter"),
        (
            lambda p: samples.clinical_note(p, "<p>Seen</p>", "e1", "application/xhtml+xml"),
            "content[0].attachment.contentType",
        ),
    ],
)
async def test_epic_note_without_encounter_or_plain_text_is_rejected_before_sending(
    writeback: WritebackClient, faults: httpx.AsyncClient, note: Any, field: str, key: str
) -> None:
    """Epic files a note only to an encounter, from a base64 text/plain or text/html first
    attachment (docs/vendors.md quirk 2): the write ends rejected, naming the field, no call."""
    before = (await faults.get("/_admin/stats/demo-epic")).json()["total"]
    status = await run_to_end(writeback, command("demo-epic", key, note(new_patient())))

    assert status.state is WriteState.REJECTED
    assert status.error_class == "validation" and field in (status.reason or "")
    assert (await faults.get("/_admin/stats/demo-epic")).json()["total"] == before


async def test_cerner_note_stored_as_rtf_verifies_by_its_text(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    """Oracle Health converts XHTML notes to RTF on store (docs/vendors.md quirk 11): the read-back
    is not byte-equal, and verification compares the normalized text instead."""
    markup = "<div><p>Seen today.</p><p>Plan: recheck &amp; call.</p></div>"
    note = samples.clinical_note(new_patient(), markup, "e1", "text/html; charset=utf-8")
    status = await run_to_end(writeback, command("demo-cerner", key, note))

    assert status.state is WriteState.VERIFIED, status.reason
    stored = (await faults.get(f"/fhir/demo-cerner/{status.resource}")).json()
    attachment = stored["content"][0]["attachment"]
    assert attachment["contentType"] == "text/rtf"
    assert "Plan: recheck & call." in base64.b64decode(attachment["data"]).decode()


async def test_cerner_note_gets_the_charset_oracle_health_requires(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    """Oracle Health refuses a note whose contentType has no charset (docs/vendors.md quirk 11): the
    adapter states UTF-8, and the note lands and verifies instead of being rejected."""
    note = samples.clinical_note(new_patient(), "Seen today.", "e1", "text/plain")
    status = await run_to_end(writeback, command("demo-cerner", key, note))

    assert status.state is WriteState.VERIFIED, status.reason
    stored = (await faults.get(f"/fhir/demo-cerner/{status.resource}")).json()
    assert stored["content"][0]["attachment"]["contentType"] == "text/plain; charset=utf-8"


async def test_cerner_409_on_every_try_is_a_conflict(
    racing: WritebackClient, interleave: Interleave, faults: httpx.AsyncClient, key: str
) -> None:
    """Oracle Health answers a stale If-Match with 409, not 412 (docs/vendors.md quirk 9): the
    update reads again and retries; when every try loses the race it is a conflict, never rejected.
    The races are real (a clinician writes before each of our PUTs), each PUT carries If-Match
    with the version read just before it, and 409 is what the EHR made of that."""
    created = await faults.post(
        "/fhir/demo-cerner/Observation", json=samples.heart_rate(new_patient(), 70)
    )
    current = (await faults.get(created.headers["Location"])).json()
    reference = f"Observation/{current['id']}"
    edits = iter(range(1, 4))

    async def clinician_writes() -> None:
        text = f"edit {next(edits)}"
        await edit_now(faults, "demo-cerner", reference, lambda r: r.update(note=[{"text": text}]))

    interleave.before_writes(clinician_writes, times=3)
    desired = {k: v for k, v in current.items() if k != "meta"} | {"status": "amended"}
    cmd = command(
        "demo-cerner",
        key,
        desired,
        interaction="update",
        target=reference,
        base_version=current["meta"]["versionId"],
    )
    await racing.submit(cmd)
    status = await racing.wait(cmd.workflow_id)

    assert status.state is WriteState.CONFLICT
    assert status.error_class == "conflict" and "kept changing" in (status.reason or "")
    assert [w.if_match for w in interleave.writes] == ['W/"1"', 'W/"2"', 'W/"3"']
    assert await our_write_answers(faults, "demo-cerner", reference) == [409, 409, 409]
    stored = (await faults.get(f"/fhir/demo-cerner/{reference}")).json()
    assert stored["status"] == "final" and stored["note"] == [{"text": "edit 3"}]


@pytest.fixture
async def athena_practice_limit(faults: httpx.AsyncClient) -> AsyncIterator[None]:
    """busy-athena's sandbox answers 429 beyond 3 concurrent requests, each taking 150 ms."""
    await faults.post("/_admin/faults/busy-athena", json={"latency_ms": 150})
    async for _ in tenant_settings(faults, "busy-athena", max_in_flight=3):
        yield
    await faults.delete("/_admin/faults/busy-athena")


@pytest.mark.usefixtures("athena_practice_limit")
async def test_athena_concurrency_stays_under_the_practice_limit(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    ehr: SandboxProcess,
    key: str,
) -> None:
    """athenaPractice answers 429 past ~30 concurrent requests (docs/vendors.md quirk 14; here 3):
    the tenant's max_concurrent_requests keeps the worker's requests under it, so 12 writes at
    once all verify without a single 429."""
    patients = [new_patient() for _ in range(12)]
    commands = [
        command("busy-athena", f"{key}-{n}", samples.heart_rate(p, 60 + n))
        for n, p in enumerate(patients)
    ]
    statuses = await asyncio.gather(*(run_to_end(writeback, cmd) for cmd in commands))

    assert [s.state for s in statuses] == [WriteState.VERIFIED] * 12
    assert not [e for s in statuses for e in s.ehr_log if "HTTP 429" in e.outcome]
    assert [resources_for_patient(ehr.db, "busy-athena", f"Patient/{p}") for p in patients] == [
        1
    ] * 12


async def test_athena_429_is_retried_after_its_retry_after(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """When athena does answer 429 (another client used the practice's slots), the write waits
    Retry-After and tries again: a transient failure, not a rejection."""
    throttled = {"kind": "status", "status": 429, "retry_after": 1, "method": "POST"}
    await faults.post("/_admin/faults/demo-athena", json={"queue": [throttled]})
    patient = new_patient()
    status = await run_to_end(
        writeback, command("demo-athena", key, samples.heart_rate(patient, 66))
    )

    assert status.state is WriteState.VERIFIED, status.reason
    assert (
        status.ehr_log[0].outcome.startswith("transient: ") and "429" in status.ehr_log[0].outcome
    )
    assert resources_for_patient(ehr.db, "demo-athena", f"Patient/{patient}") == 1
