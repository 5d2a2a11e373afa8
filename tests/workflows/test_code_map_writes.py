"""A tenant's code maps (adapters/code_maps.py) in a real write: a local lab code mapped to LOINC
ends verified with the LOINC coding in the resource the EHR stored, the local coding beside it;
a code of the mapped system without a mapping is rejected in the map step, before any request
reaches the EHR. Time-skipping server, real worker, real sandbox EHR."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support.audit import current_resources_for_command
from support.sandbox_process import SandboxProcess
from support.workers import running_worker
from support.workflow_runs import command, run_to_end
from temporalio.testing import WorkflowEnvironment

from adapters.code_systems import LOINC
from adapters.tenants import Tenant, TenantRegistry
from workers.client import WritebackClient
from workers.family_samples import lab_result
from workflows.contract import WriteState

MAPPED = "lab-map-r4"  # a generic R4 tenant whose lab sends its own codes
LAB = "http://lab.example.org/codes"


@pytest.fixture
async def mapping(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry, ehr: SandboxProcess
) -> AsyncIterator[WritebackClient]:
    r4 = tenants.get("demo-r4")
    assert r4 is not None
    maps = {"map": [{"from": LAB, "to": LOINC, "codes": {"GLU": "2345-7"}}]}
    mapped = Tenant.model_validate(
        {**r4.model_dump(), "id": MAPPED, "fhir_base_url": f"{ehr.url}/fhir/{MAPPED}"}
        | {"code_maps": maps}
    )
    async with running_worker(time_skipping.client, TenantRegistry([*tenants, mapped], "t")) as c:
        yield c


def local_lab(code: str) -> dict[str, Any]:
    resource = lab_result("map-pt-1")
    resource["code"] = {"coding": [{"system": LAB, "code": code}], "text": "Glucose"}
    return resource


async def requests_seen(ehr: SandboxProcess) -> int:
    async with httpx.AsyncClient(base_url=ehr.url) as admin:
        return int((await admin.get(f"/_admin/stats/{MAPPED}")).json()["total"])


async def test_a_local_lab_code_is_written_with_its_loinc_coding(
    mapping: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    status = await run_to_end(mapping, command(MAPPED, key, local_lab("GLU")))

    assert status.state is WriteState.VERIFIED, status.reason
    (stored,) = current_resources_for_command(ehr.db, MAPPED, f"{MAPPED}:{key}")
    assert stored["code"]["coding"] == [
        {"system": LOINC, "code": "2345-7"},
        {"system": LAB, "code": "GLU"},
    ]


async def test_an_unmapped_local_code_is_rejected_before_any_request(
    mapping: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    before = await requests_seen(ehr)
    status = await run_to_end(mapping, command(MAPPED, key, local_lab("XYZ-UNMAPPED")))

    assert status.state is WriteState.REJECTED
    assert status.error_class == "validation"
    assert f"Observation.code.coding[0]: no mapping from system '{LAB}'" in (status.reason or "")
    assert "XYZ" not in (status.reason or "")
    assert status.attempts == 0
    assert await requests_seen(ehr) == before
