"""Every family's withdrawn form (adapters/compensation.py) applied by the product's withdraw
step to the real sandbox, on each personality that takes updates (generic R4 with If-Match or
with JSON Patch, Oracle Health), and read back through the EHR's API."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support.activities import activity_environment
from support.audit import is_live
from support.sandbox_process import SandboxProcess

from activities.ehr_client import EhrClient
from activities.ehr_writes import EhrWrites
from activities.fhir_http import parse_location
from activities.models import EhrWithdraw
from adapters.compensation import is_withdrawn, withdrawal
from adapters.families import Family
from adapters.tenants import TenantRegistry
from adapters.vendor import adapter_for
from workers.family_samples import SINGLE_WRITES, care_plan, lab_report

SAMPLES: dict[str, Any] = {
    **{str(family): make for family, make in SINGLE_WRITES.items()},
    str(Family.LABORATORY_REPORT): lambda patient: lab_report(patient, ["Observation/lab-1"]),
    str(Family.CARE_PLAN): lambda patient: care_plan(patient, ["Goal/goal-1"]),
}


#: (tenant, family) for every family each tenant's vendor writes (README: "What it writes").
CASES = [
    (tenant, family)
    for tenant, vendor in [
        ("families-r4", "generic_r4"),
        ("families-cerner", "cerner"),
        ("families-patch-r4", "generic_r4"),
    ]
    for family in sorted(SAMPLES)
    if Family(family) in adapter_for(vendor).families
]


@pytest.mark.parametrize(("tenant", "family"), CASES)
async def test_each_family_is_withdrawn_and_reads_back_withdrawn(
    ehr: SandboxProcess, tenants: TenantRegistry, tenant: str, family: str, key: str
) -> None:
    resource = SAMPLES[family](f"pt-{key}")
    async with httpx.AsyncClient(base_url=ehr.url, timeout=10) as http:
        created = await http.post(f"/fhir/{tenant}/{resource['resourceType']}", json=resource)
        assert created.status_code == 201, created.text
        located = parse_location(created.headers["location"])  # Oracle Health: no body
        assert located is not None
        reference = f"{located[0]}/{located[1]}"
        form = withdrawal(resource["resourceType"])
        assert form is not None
        order = EhrWithdraw(
            tenant=tenant,
            request_id=f"{key}/withdraw",
            target=reference,
            withdrawal=form,
            written={name: resource.get(name) for name in form},
        )
        steps = EhrWrites(EhrClient(tenants, http))
        receipt = await activity_environment().run(steps.withdraw, order)
        assert f"{receipt.resource_type}/{receipt.id}" == reference

        stored = (await http.get(f"/fhir/{tenant}/{reference}")).json()
    assert is_withdrawn(stored), family
    assert not is_live(stored), "the sandbox's own audit sees it out of the chart"
    for name, value in form.items():
        if value is None:  # removed (con-5, ait-2), not sent as a JSON null
            assert name not in stored, name
        else:
            assert stored[name] == value, name
