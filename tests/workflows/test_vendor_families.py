"""Every clinical family x every demo personality, end to end on the time-skipping server against
the real sandbox (issue #20, acceptance 1): a family the tenant's vendor writes ends ``verified``
(athenaOne through its chart API, Veradigm through Unity); any other is ``rejected`` as
``unsupported`` before any EHR request, with a reason naming the vendor and the family.

What a vendor writes is its adapter's ``families`` (adapters/epic.py, cerner.py, athena.py,
veradigm.py, generic_r4.py; docs/vendors.md); the demo tenants allow each family their vendor
writes (adapters/default_tenants.toml)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from support.audit import resources_for_patient
from support.family_resources import every_sample
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command, run_to_end

from adapters.code_systems import CONDITION_VERIFICATION
from adapters.families import Family, family_of
from adapters.tenants import TenantRegistry
from workers.client import WritebackClient
from workflows.contract import WriteState

DEMO_TENANTS = ["demo-r4", "demo-epic", "demo-cerner", "demo-athena", "demo-veradigm"]
#: Families whose resources the sandbox indexes under no patient search parameter (Task names its
#: patient in ``for``; a Provenance names none).
NO_PATIENT_SEARCH = {Family.TASK, Family.PROVENANCE}


def sample(tenant: str, family: Family, patient: str) -> dict[str, Any]:
    """The family's sample (a saga's step with its references resolved, as the validate step
    sees it: tests/support/family_resources.py), as the tenant's vendor files it: Epic files
    problems as 'provisional' only (docs/vendors.md quirk 3), a rule of its own the adapter
    refuses on."""
    resource = next(r for r in every_sample(patient) if family_of(r) is family)
    if tenant == "demo-epic" and family is Family.PROBLEM:
        resource["verificationStatus"] = {
            "coding": [{"system": CONDITION_VERIFICATION, "code": "provisional"}]
        }
    return resource


async def requests_of(faults: httpx.AsyncClient, tenant: str, workflow_id: str) -> list[Any]:
    """The sandbox's logged requests (FHIR and vendor API) carrying this write's correlation id."""
    logged = (await faults.get(f"/_admin/requests/{tenant}")).json()["requests"]
    return [r for r in logged if str(r.get("request_id") or "").startswith(workflow_id)]


@pytest.mark.parametrize("family", list(Family), ids=str)
@pytest.mark.parametrize("tenant", DEMO_TENANTS)
async def test_each_family_is_written_where_its_vendor_writes_it_and_refused_elsewhere(
    writeback: WritebackClient,
    tenants: TenantRegistry,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    tenant: str,
    family: Family,
    key: str,
) -> None:
    demo = tenants.get(tenant)
    assert demo is not None
    vendor = demo.adapter()
    patient = f"f-{uuid.uuid4().hex[:10]}"
    cmd = command(tenant, key, sample(tenant, family, patient))
    before = (await faults.get(f"/_admin/stats/{tenant}")).json()["total"]

    status = await run_to_end(writeback, cmd)

    if family in vendor.families:
        assert status.state is WriteState.VERIFIED, status.reason
        if family in NO_PATIENT_SEARCH:  # the one resource the write says it stored
            stored = await faults.get(f"/fhir/{tenant}/{status.resource}")
            assert stored.status_code == 200
            assert stored.json()["resourceType"] == cmd.resource["resourceType"]
        else:
            assert resources_for_patient(ehr.db, tenant, f"Patient/{patient}") == 1
        assert await requests_of(faults, tenant, cmd.workflow_id)  # the log does see our writes
    else:
        assert status.state is WriteState.REJECTED
        assert status.error_class == "unsupported"
        assert status.reason == (
            f"resourceType: family '{family.value}' is not written to vendor '{vendor.vendor}'"
        )
        assert await requests_of(faults, tenant, cmd.workflow_id) == []
        assert (await faults.get(f"/_admin/stats/{tenant}")).json()["total"] == before
        assert resources_for_patient(ehr.db, tenant, f"Patient/{patient}") == 0
