"""Issue 17, finding 7: a reference names one resource, and the crosswalk takes only the match
it asked for.

Attacks: ``confirm --reference Observation/.`` (a read of ``Observation/.`` is a search: its
Bundle of unrelated patients would become the write's EHR state in ``review show``); an EHR that
answers the crosswalk's identifier search with a resource of another type, one without the
identifier searched for, or one whose id is not a FHIR id."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from support.activities import activity_environment
from temporalio.exceptions import ApplicationError

from activities.crosswalk import Crosswalk, CrosswalkInput
from activities.crosswalk_store import SqliteCrosswalk
from activities.ehr_client import EhrClient
from adapters.tenants import Tenant, TenantRegistry, Vendor
from workers import samples
from workflows.contract import Interaction, Resolution, ResolutionAction, WriteCommand

BASE = "https://ehr.test/fhir/r4"
SYSTEM = "urn:writeback:internal-id"


@pytest.mark.parametrize("reference", ["Observation/.", "Observation/..", "Observation/..."])
def test_a_reference_of_dots_is_refused(reference: str) -> None:
    with pytest.raises(ValidationError):
        Resolution(action=ResolutionAction.CONFIRM, by="op-1", reason="found", reference=reference)
    resource = {**samples.heart_rate("p", 70), "id": "x"}
    with pytest.raises(ValidationError):
        WriteCommand(
            tenant="demo-r4",
            idempotency_key="k",
            resource=resource,
            interaction=Interaction.UPDATE,
            target=reference,
            base_version="1",
        )
    # ids may hold dots
    Resolution(
        action=ResolutionAction.CONFIRM, by="op-1", reason="found", reference="Observation/a.1"
    )


def patient(**changes: Any) -> dict[str, Any]:
    base = {
        "resourceType": "Patient",
        "id": "tp-1",
        "identifier": [{"system": SYSTEM, "value": "mrn-1"}],
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    "answer",
    [
        {**patient(), "resourceType": "Observation"},  # another type
        patient(identifier=[{"system": SYSTEM, "value": "someone-else"}]),  # not the one asked for
        patient(identifier=[]),
        patient(id="../Patient/tp-2"),  # not a FHIR id
        patient(id=".."),
    ],
)
async def test_the_crosswalk_takes_only_the_match_it_asked_for(
    answer: dict[str, Any], tmp_path: Path
) -> None:
    tenant = Tenant(id="t1", vendor=Vendor.GENERIC_R4, fhir_base_url=BASE)

    def ehr(request: httpx.Request) -> httpx.Response:
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": answer, "search": {"mode": "match"}}],
        }
        return httpx.Response(200, json=bundle)

    resource = samples.heart_rate("p", 70)
    resource["subject"] = {"reference": "Patient/internal:mrn-1"}
    order = CrosswalkInput(
        tenant="t1", request_id="r-1", resource=resource, requested_at=datetime.now(UTC)
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        crosswalk = Crosswalk(
            EhrClient(TenantRegistry([tenant], "test"), http), SqliteCrosswalk(tmp_path / "x.db")
        )
        with pytest.raises(ApplicationError) as refused:
            await activity_environment().run(crosswalk.resolve, order)
    assert refused.value.type == "unmapped"


async def test_the_crosswalk_takes_the_match_it_asked_for(tmp_path: Path) -> None:
    """Control: the same search answered as asked maps the reference."""
    tenant = Tenant(id="t1", vendor=Vendor.GENERIC_R4, fhir_base_url=BASE)

    def ehr(request: httpx.Request) -> httpx.Response:
        entry = [{"resource": patient(), "search": {"mode": "match"}}]
        return httpx.Response(
            200, json={"resourceType": "Bundle", "type": "searchset", "entry": entry}
        )

    resource = samples.heart_rate("p", 70)
    resource["subject"] = {"reference": "Patient/internal:mrn-1"}
    order = CrosswalkInput(
        tenant="t1", request_id="r-1", resource=resource, requested_at=datetime.now(UTC)
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        crosswalk = Crosswalk(
            EhrClient(TenantRegistry([tenant], "test"), http), SqliteCrosswalk(tmp_path / "x.db")
        )
        result = await activity_environment().run(crosswalk.resolve, order)
    assert result.resource["subject"]["reference"] == "Patient/tp-1"


async def test_a_read_answered_by_a_search_bundle_is_no_resource() -> None:
    """Behind the contract: whatever path a read is given, a Bundle (or another resource) that
    answers it is not taken for the resource read."""
    tenant = Tenant(id="t1", vendor=Vendor.GENERIC_R4, fhir_base_url=BASE)
    others = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": patient()}]}

    def ehr(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=others)

    async with httpx.AsyncClient(transport=httpx.MockTransport(ehr)) as http:
        client = EhrClient(TenantRegistry([tenant], "test"), http)
        with pytest.raises(ApplicationError) as refused:
            await activity_environment().run(client.read, tenant, "Observation/.", "r-1")
    assert refused.value.type == "ehr_rejected"
