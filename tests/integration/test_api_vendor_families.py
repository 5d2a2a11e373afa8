"""The HTTP API's door refuses a family the tenant's vendor does not write, as the worker's validate
step would (workers/api/submission.py mirrors activities/command_steps.py): 422 ``not-supported``
naming the family and the vendor, and no write starts. The real ``writeback api`` process."""

from __future__ import annotations

import httpx
import pytest
from support.api_process import ApiProcess

from adapters.families import Family
from workers.family_samples import SINGLE_WRITES

pytestmark = pytest.mark.integration

API_CLIENTS = """
[[client]]
id = "family-app"
tenants = ["demo-cerner"]
scopes = ["system/*.cu"]
requests_per_second = 50
burst = 50
"""


async def test_a_family_the_vendor_does_not_write_is_refused_at_the_door(
    api: ApiProcess, key: str
) -> None:
    token = api.token("family-app", "system/Immunization.c", user="Practitioner/7")
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/fhir+json",
        "Idempotency-Key": key,
    }
    immunization = SINGLE_WRITES[Family.IMMUNIZATION]("api-patient")
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as http:
        answer = await http.post(
            "/fhir/demo-cerner/Immunization", json=immunization, headers=headers
        )
        (issue,) = answer.json()["issue"]
        started = await http.get(f"/writes/wb:demo-cerner:{key}", headers=headers)

    assert answer.status_code == 422
    assert issue["code"] == "not-supported"
    assert issue["diagnostics"] == (
        "resourceType: family 'immunization' is not written to vendor 'cerner'"
    )
    assert issue["expression"] == ["Immunization.resourceType"]
    assert started.status_code == 404  # no write started
