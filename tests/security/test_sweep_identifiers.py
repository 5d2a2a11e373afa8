"""Issue 17, finding 6: the reconciliation sweep reads command identifiers from the EHR, where
anyone who can edit a chart can write one.

Attacks: identifier values with another tenant's prefix, with a quote that would end a query
(the sweep once put them into visibility queries; it now looks commands up by workflow id and in
its own database, with bound parameters), and with a patient's name where the key goes (which
became a plain-text finding workflow id)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from support.activities import activity_environment
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.audit_anchor import AnchorStore
from activities.audit_chain import LedgerKeys
from activities.audit_ledger import SqliteLedger
from activities.ehr_client import EhrClient
from activities.models import SweepCursor, SweepPage, SweepPageOrder
from activities.sweep_reads import SweepReads
from activities.write_records import WriteRecords
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


TENANT = Tenant(
    id="t1",
    vendor=Vendor.GENERIC_R4,
    fhir_base_url=BASE,
    capabilities=Capabilities(writable={"Observation": ["create"]}),
)


async def sweep_page(
    entries: list[dict[str, Any]], temporal: Client, tmp_path: Path, tenant: Tenant = TENANT
) -> SweepPage:
    """One page of a sweep over ``entries`` (the EHR's answer), with no write of ours recorded."""

    def ehr(request: httpx.Request) -> httpx.Response:
        bundle = {"resourceType": "Bundle", "type": "searchset"}
        return httpx.Response(200, json={**bundle, "entry": [{"resource": r} for r in entries]})

    keys = LedgerKeys((b"k" * 32,))
    ledger = SqliteLedger(tmp_path / "ledger.db", keys, AnchorStore(tmp_path / "anchors", keys))
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        sweep = SweepReads(
            EhrClient(TenantRegistry([tenant], "test"), http), WriteRecords(ledger), temporal
        )
        now = datetime.now(UTC)
        order = SweepPageOrder(
            tenant=tenant.id, request_id="r-1", since=now, started=now, cursor=SweepCursor()
        )
        return await activity_environment().run(sweep.page, order)


async def test_the_scan_keeps_only_this_tenants_commands_and_resources(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Another tenant's prefix, a quote, a name where the key goes, not a FHIR id, another type:
    none of it is judged (no finding); only the well-formed copy of ours is, as an orphan."""
    entries = [observation(f"h{i}", value) for i, value in enumerate(HOSTILE)]
    entries += [
        observation("..", "t1:k2"),  # not a FHIR id
        observation("x", "t1:k3", resourceType="Patient"),  # not the type searched
        observation("ok-1", "t1:k4"),
    ]
    page = await sweep_page(entries, dev_server.client, tmp_path)
    assert page.resources_scanned == 1
    assert [(f.kind, f.resources, f.command) for f in page.findings] == [
        (FindingKind.ORPHAN, ["Observation/ok-1"], "t1:k4")
    ]


async def test_an_orphan_without_a_write_shows_no_ehr_written_key_in_its_reason(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    """A well-formed key that someone wrote into our identifier system in the EHR (a patient's
    name where the key goes) raises an orphan finding: its reason, which the review queue and
    logs show, says that no write exists without repeating the key."""
    page = await sweep_page([observation("o1", f"t1:{NAME}")], dev_server.client, tmp_path)
    (orphan,) = page.findings
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
