"""Issue 17, finding 6: the reconciliation sweep reads command identifiers from the EHR, where
anyone who can edit a chart can write one.

Attacks: identifier values with another tenant's prefix, with a quote that ends the visibility
query (blinding the sweep, or listing other tenants' workflows), and with a patient's name where
the key goes (which became a plain-text finding workflow id)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from support.activities import activity_environment
from temporalio.testing import WorkflowEnvironment

from activities.ehr_client import EhrClient
from activities.models import ScannedResource, ScanOrder
from activities.reconciliation import CompareOrder, Reconciler
from activities.sweep_reads import SweepReads
from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from adapters.tenants import Capabilities, Tenant, TenantRegistry, Vendor
from workflows.reconcile_contract import Finding, FindingKind, finding_workflow_id

BASE = "https://ehr.test/fhir/r4"
NAME = f"JaneDoeMrn{uuid.uuid4().hex[:6]}"
INJECTION = "t1:k') OR (WorkflowId != 'x"
HOSTILE = [
    "acme:k1",  # another tenant's command
    INJECTION,
    f"t1:{NAME} Jane Doe",  # not a token
    "t1:",
]


def observation(resource_id: str, command: str, **changes: Any) -> dict[str, Any]:
    identifier = [{"system": COMMAND_IDENTIFIER_SYSTEM, "value": command}]
    return {"resourceType": "Observation", "id": resource_id, "identifier": identifier, **changes}


async def test_the_scan_keeps_only_this_tenants_commands_and_resources() -> None:
    tenant = Tenant(
        id="t1",
        vendor=Vendor.GENERIC_R4,
        fhir_base_url=BASE,
        capabilities=Capabilities(writable={"Observation": ["create"]}),
    )
    entries = [observation(f"h{i}", value) for i, value in enumerate(HOSTILE)]
    entries += [
        observation("..", "t1:k2"),  # not a FHIR id
        observation("x", "t1:k3", resourceType="Patient"),  # not the type searched
        observation("ok-1", "t1:k4"),
    ]

    def ehr(request: httpx.Request) -> httpx.Response:
        bundle = {"resourceType": "Bundle", "type": "searchset"}
        return httpx.Response(200, json={**bundle, "entry": [{"resource": r} for r in entries]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        sweep = SweepReads(EhrClient(TenantRegistry([tenant], "test"), http))
        order = ScanOrder(tenant="t1", request_id="r-1", since=datetime.now(UTC))
        result = await activity_environment().run(sweep.scan, order)
    assert [(r.reference, r.command) for r in result.resources] == [("Observation/ok-1", "t1:k4")]


async def test_a_hostile_command_neither_blinds_nor_widens_the_visibility_query(
    dev_server: WorkflowEnvironment,
) -> None:
    """Even when a scan result carries them (a history recorded before the scan checked),
    compare puts no such value into a visibility query and raises no finding for it."""
    tenant = f"t{uuid.uuid4().hex[:8]}"
    scanned = [
        ScannedResource(reference=f"Observation/h{i}", version="1", command=c, withdrawn=False)
        for i, c in enumerate([*HOSTILE, INJECTION.replace("t1", tenant)])
    ]
    order = CompareOrder(
        tenant=tenant, since=datetime.now(UTC) - timedelta(hours=1), scanned=scanned
    )
    comparison = await activity_environment().run(Reconciler(dev_server.client).compare, order)
    assert comparison.findings == []


async def test_an_orphan_without_a_write_shows_no_ehr_written_key_in_its_reason(
    dev_server: WorkflowEnvironment,
) -> None:
    """A well-formed key that someone wrote into our identifier system in the EHR (a patient's
    name where the key goes) raises an orphan finding: its reason, which the review queue and
    logs show, says that no write exists without repeating the key."""
    tenant = f"t{uuid.uuid4().hex[:8]}"
    scanned = [
        ScannedResource(
            reference="Observation/o1", version="1", command=f"{tenant}:{NAME}", withdrawn=False
        )
    ]
    order = CompareOrder(
        tenant=tenant, since=datetime.now(UTC) - timedelta(hours=1), scanned=scanned
    )
    comparison = await activity_environment().run(Reconciler(dev_server.client).compare, order)
    (orphan,) = comparison.findings
    assert orphan.kind is FindingKind.ORPHAN
    assert "no write" in orphan.reason
    assert NAME not in orphan.reason
    assert NAME not in finding_workflow_id(orphan)


def test_a_finding_id_shows_no_ehr_text() -> None:
    finding = Finding(
        kind=FindingKind.ORPHAN,
        tenant="t1",
        command=f"t1:{NAME}",
        write_id=f"wb:t1:{NAME}",
        resources=["Observation/1"],
        detail="",
    )
    workflow_id = finding_workflow_id(finding)
    assert NAME not in workflow_id
    assert workflow_id.startswith("wb-finding:t1:orphan:")
    assert finding_workflow_id(finding) == workflow_id  # one per write and kind, as before
