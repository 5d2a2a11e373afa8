"""Reconciliation that stays correct at a hospital's volume (issue 19, acceptance 1), on the dev
server, a `writeback worker` process and the sandbox: the sweep compares the EHR with the durable
record of our writes (not Temporal's visibility), resumes from its watermark, follows any next
link on the EHR's own server, and remediates only what is safe to remediate."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.audit import current_resources_for_command
from support.cli import run_cli
from support.sandbox_process import SandboxProcess
from support.temporal import dev_server_environment, temporal_address
from support.worker_process import WorkerProcess
from support.workflow_runs import recorded, verified_heart_rates
from temporalio.testing import WorkflowEnvironment

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteCommand, WriteState
from workflows.reconcile_contract import Finding, finding_workflow_id

pytestmark = pytest.mark.integration


async def verified(
    dev_server: WorkflowEnvironment, cli_env: dict[str, str], tenant: str, n: int
) -> list[tuple[str, str]]:
    """``n`` verified heart rates: [(workflow id, resource reference)]."""
    client = WritebackClient(dev_server.client, task_queue=cli_env["WRITEBACK_TASK_QUEUE"])
    statuses = await verified_heart_rates(client, tenant, n, "sc")
    return [(s.workflow_id, str(s.resource)) for s in statuses]


async def sweep(cli_env: dict[str, str], tenant: str, *extra: str) -> dict[str, Any]:
    result = await asyncio.to_thread(
        run_cli, "reconcile", "run", "--tenant", tenant, "--json", *extra, env=cli_env
    )
    assert result.returncode in (0, 3), result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


async def finding_state(
    dev_server: WorkflowEnvironment, finding: dict[str, Any], done: Callable[[Any], bool]
) -> Any:
    """The finding's status once ``done(status)`` holds."""
    handle = dev_server.client.get_workflow_handle(finding_workflow_id(Finding(**finding)))
    deadline = time.monotonic() + 60
    while True:
        status = await handle.query("status")
        if done(status) or time.monotonic() > deadline:
            return status
        await asyncio.sleep(0.2)


async def test_drift_and_missing_are_found_on_writes_temporal_has_forgotten(
    dev_server: WorkflowEnvironment,
    cli_env: dict[str, str],
    ehr: SandboxProcess,
    tenants_file: Path,
    tmp_path: Path,
) -> None:
    """Past its retention, Temporal holds neither a write's history nor its visibility: here the
    sweep runs on a second Temporal server that never saw the writes (the dev server cannot run a
    namespace with a retention shorter than an hour), with the same product database."""
    since = datetime.now(UTC).isoformat()
    (_, drifted), (_, withdrawn) = await verified(dev_server, cli_env, "sweep-mark-r4", 2)
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/sweep-mark-r4") as fhir:
        changed = (await fhir.get(drifted)).json()
        changed["valueQuantity"]["value"] = 120
        assert (await fhir.put(drifted, json=changed)).status_code == 200
        gone = (await fhir.get(withdrawn)).json()
        gone["status"] = "entered-in-error"
        assert (await fhir.put(withdrawn, json=gone)).status_code == 200

    later = await dev_server_environment()
    queue = f"after-retention-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(temporal_address(later), queue, tenants_file, tmp_path / "w.log")
    try:
        env = {"TEMPORAL_ADDRESS": temporal_address(later), "WRITEBACK_TASK_QUEUE": queue}
        report = await sweep(env, "sweep-mark-r4", "--since", since)
    finally:
        worker.stop()
        await later.shutdown()
    found = {(f["kind"], f["resources"][0]): f for f in report["findings"]}
    assert ("drift", drifted) in found and ("missing", withdrawn) in found, found
    assert not [f for f in report["findings"] if f["kind"] == "orphan"], report["findings"]
    assert "valueQuantity.value" in found[("drift", drifted)]["detail"]


async def test_a_sweep_resumes_from_its_watermark_after_being_down_longer_than_its_lookback(
    dev_server: WorkflowEnvironment, cli_env: dict[str, str], ehr: SandboxProcess
) -> None:
    """The tenant looks back 3.6 s: a change older than that is found only from the watermark
    the last complete sweep left."""
    ((_, drifted),) = await verified(dev_server, cli_env, "sweep-mark-r4", 1)
    await sweep(cli_env, "sweep-mark-r4")  # leaves the watermark at its start
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/sweep-mark-r4") as fhir:
        changed = (await fhir.get(drifted)).json()
        changed["valueQuantity"]["value"] = 130
        assert (await fhir.put(drifted, json=changed)).status_code == 200
    changed_at = time.time()
    lookback = 0.001 * 3600
    # no sweep runs for twice the lookback: time passing is what is tested, not a wait for a state
    await asyncio.sleep(max(0.0, changed_at + 2 * lookback - time.time()))

    report = await sweep(cli_env, "sweep-mark-r4")
    assert report["from_watermark"] is True
    assert ("drift", drifted) in {(f["kind"], f["resources"][0]) for f in report["findings"]}


async def test_every_page_is_followed_through_hapi_style_next_links_and_an_orphan_is_found(
    dev_server: WorkflowEnvironment, cli_env: dict[str, str], ehr: SandboxProcess
) -> None:
    """Pages of 2; the EHR's next links are HAPI's ``{base}?_getpages=…`` on the base URL."""
    async with httpx.AsyncClient(base_url=ehr.url) as admin:
        answer = await admin.post("/_admin/tenants/sweep-pages-r4", json={"paging": "hapi"})
        assert answer.status_code == 200, answer.text
    since = datetime.now(UTC).isoformat()
    writes = await verified(dev_server, cli_env, "sweep-pages-r4", 5)
    orphan_command = f"sweep-pages-r4:orphan-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/sweep-pages-r4") as fhir:
        planted = samples.heart_rate("scale-orphan", 77)
        planted["identifier"] = [{"system": COMMAND_IDENTIFIER_SYSTEM, "value": orphan_command}]
        answer = await fhir.post("Observation", json=planted)
        assert answer.status_code == 201
        orphan = answer.headers["Location"].split("/_history")[0].split("/fhir/sweep-pages-r4/")[1]

    report = await sweep(cli_env, "sweep-pages-r4", "--since", since)
    assert report["resources_scanned"] >= len(writes) + 1 and report["pages"] >= 3
    kinds = [(f["kind"], f["resources"]) for f in report["findings"]]
    assert kinds == [("orphan", [orphan])]
    assert report["findings"][0]["write_exists"] is False


async def test_a_duplicate_is_withdrawn_by_policy_unless_someone_changed_the_copy(
    dev_server: WorkflowEnvironment, cli_env: dict[str, str], ehr: SandboxProcess
) -> None:
    since = datetime.now(UTC).isoformat()
    (_, same), (_, edited) = await verified(dev_server, cli_env, "sweep-remedy-r4", 2)
    async with httpx.AsyncClient(base_url=f"{ehr.url}/fhir/sweep-remedy-r4") as fhir:
        copies = {}
        for reference, change in ((same, None), (edited, 140)):
            copy = (await fhir.get(reference)).json()
            copy = {k: v for k, v in copy.items() if k not in ("id", "meta")}
            if change is not None:  # a clinician corrected the extra copy
                copy["valueQuantity"]["value"] = change
            answer = await fhir.post("Observation", json=copy)
            assert answer.status_code == 201
            copies[reference] = answer.json()["id"]

    report = await sweep(cli_env, "sweep-remedy-r4", "--since", since)
    duplicates = {f["keep"]: f for f in report["findings"] if f["kind"] == "duplicate"}
    assert set(duplicates) == {same, edited}

    remedied = await finding_state(dev_server, duplicates[same], lambda s: s["state"] != "mismatch")
    assert remedied["state"] == "compensated"
    command = duplicates[same]["command"]
    statuses = {
        c["id"]: c.get("status")
        for c in current_resources_for_command(ehr.db, "sweep-remedy-r4", command)
    }
    assert statuses == {same.split("/")[1]: "final", copies[same]: "entered-in-error"}

    left = await finding_state(
        dev_server, duplicates[edited], lambda s: "remediation" in (s.get("reason") or "")
    )
    assert left["state"] == "mismatch", left
    assert "someone changed it" in left["reason"]
    command = duplicates[edited]["command"]
    statuses = {
        c["id"]: c.get("status")
        for c in current_resources_for_command(ehr.db, "sweep-remedy-r4", command)
    }
    assert set(statuses.values()) == {"final"} and len(statuses) == 2


async def plant_same_vitals(ehr: SandboxProcess, tenant: str, patient: str, when: str) -> None:
    """A second reading of the same heart rate, entered through the vendor's own API (as a
    clinician's device or a late commit would): the EHR keeps no identifier of ours on either."""
    async with httpx.AsyncClient(base_url=ehr.url) as http:
        if tenant == "demo-athena":
            reading = datetime.fromisoformat(when).strftime("%m/%d/%Y %H:%M:%S")
            group = [
                {"clinicalelementid": "VITALS.HEARTRATE", "value": 66, "readingtaken": reading}
            ]
            form = {"departmentid": "1", "vitals": json.dumps([group])}
            url = f"/athena/{tenant}/v1/195900/chart/{patient}/vitals"
            assert (await http.post(url, data=form)).status_code == 200
            return
        root = f"/unity/{tenant}/json"
        token = (await http.post(f"{root}/GetToken", json={"Username": "u", "Password": ""})).text
        message = {
            "Action": "SaveVitals",
            "Token": token,
            "PatientID": patient,
            "Parameter1": when.replace("+00:00", "Z"),
            "Parameter2": json.dumps([{"loinc": "8867-4", "value": 66, "unit": "/min"}]),
        }
        assert (await http.post(f"{root}/MagicJson", json=message)).status_code == 200


@pytest.mark.parametrize("tenant", ["demo-athena", "demo-veradigm"])
async def test_duplicates_are_found_by_content_where_the_ehr_keeps_no_identifier_of_ours(
    dev_server: WorkflowEnvironment, cli_env: dict[str, str], ehr: SandboxProcess, tenant: str
) -> None:
    since = datetime.now(UTC).isoformat()
    patient = f"v-{uuid.uuid4().hex[:10]}"
    when = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    client = WritebackClient(dev_server.client, task_queue=cli_env["WRITEBACK_TASK_QUEUE"])
    command = WriteCommand(
        tenant=tenant,
        idempotency_key=f"sc-{uuid.uuid4().hex[:12]}",
        resource=samples.heart_rate(patient, 66, when),
    )
    status = await client.wait((await client.submit(command)).workflow_id)
    assert status.state is WriteState.VERIFIED
    await recorded(client, [status.workflow_id])
    await plant_same_vitals(ehr, tenant, patient, when.isoformat())

    report = await sweep(cli_env, tenant, "--since", since)
    (duplicate,) = [f for f in report["findings"] if f["kind"] == "duplicate"]
    assert duplicate["keep"] == status.resource and len(duplicate["resources"]) == 2
    assert any("no identifier of ours" in note for note in report["notes"])
