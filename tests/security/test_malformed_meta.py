"""Issue 17, low: a 201 whose ``meta`` is malformed raised ``AttributeError`` in the write step,
so a write the EHR had committed ended ``rejected``. Attack, at the edge (an httpx transport
standing in for the EHR): the create is answered 201 with ``meta`` a string, a list, or a
``versionId`` that is an object; and a read-back whose ``meta`` is a list. The write is taken as
written (no version), and the read-back is read."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support.activities import activity_environment

from activities.ehr_client import EhrClient
from activities.ehr_writes import EhrWrites
from activities.models import EhrVerify, EhrWrite, WriteReceipt
from adapters.fhir_r4 import prepare_create
from adapters.tenants import Capabilities, Tenant, TenantRegistry, Vendor
from workers import samples

BASE = "https://ehr.test/fhir/r4"


def tenant() -> Tenant:
    return Tenant(
        id="t1",
        vendor=Vendor.GENERIC_R4,
        fhir_base_url=BASE,
        capabilities=Capabilities(conditional_create=True),
    )


@pytest.mark.parametrize("meta", ["v1", ["x"], {"versionId": {"x": 1}}, {"versionId": "a b/c"}])
async def test_a_committed_create_with_malformed_meta_is_written(meta: Any) -> None:
    def ehr(request: httpx.Request) -> httpx.Response:
        body = {"resourceType": "Observation", "id": "obs-1", "meta": meta}
        return httpx.Response(201, json=body, headers={"Location": f"{BASE}/Observation/obs-1"})

    request = prepare_create(tenant(), samples.heart_rate("p1", 72), "t1:k")
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        steps = EhrWrites(EhrClient(TenantRegistry([tenant()], "test"), http))
        order = EhrWrite(tenant="t1", request_id="r-1", request=request)
        receipt = await activity_environment().run(steps.write, order)
    assert (receipt.id, receipt.version, receipt.created) == ("obs-1", None, True)


async def test_a_read_back_with_malformed_meta_is_read() -> None:
    stored = {**samples.heart_rate("p1", 72), "id": "obs-1", "meta": ["Jane"]}

    def ehr(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=stored)

    receipt = WriteReceipt(
        resource_type="Observation", id="obs-1", version=None, created=True, status_code=201
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        steps = EhrWrites(EhrClient(TenantRegistry([tenant()], "test"), http))
        order = EhrVerify(tenant="t1", request_id="r-1", receipt=receipt, expected=stored)
        verification = await activity_environment().run(steps.verify, order)
    assert verification.found and verification.version is None
