"""The FHIR R4 adapter: how a create is prepared per tenant, and how read-back is compared."""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from adapters.athena import AthenaApiSettings as VendorApiSettings  # athena fields
from adapters.fhir_r4 import (
    COMMAND_IDENTIFIER_SYSTEM,
    DedupStrategy,
    UnsupportedVendor,
    differences,
    prepare_create,
    prepare_update,
)
from adapters.problems import ResourceInvalid
from adapters.tenants import Capabilities, Tenant, Vendor
from workers import samples


def tenant(vendor: Vendor = Vendor.GENERIC_R4, conditional: bool = True) -> Tenant:
    return Tenant(
        id="t1",
        vendor=vendor,
        fhir_base_url="http://ehr.test/fhir",
        allow_insecure_http=True,
        capabilities=Capabilities(conditional_create=conditional),
    )


def test_create_stamps_the_command_identifier_and_drops_client_ids() -> None:
    resource = samples.heart_rate("p1", 72) | {"id": "client-id", "meta": {"versionId": "9"}}
    resource["identifier"] = [
        {"system": "urn:lab", "value": "L-1"},
        {"system": COMMAND_IDENTIFIER_SYSTEM, "value": "stale"},
    ]
    request = prepare_create(tenant(), resource, "t1:key-1")

    assert "id" not in request.body and "meta" not in request.body
    assert request.body["identifier"] == [
        {"system": "urn:lab", "value": "L-1"},
        {"system": COMMAND_IDENTIFIER_SYSTEM, "value": "t1:key-1"},
    ]
    assert "identifier" not in resource or resource["identifier"][1]["value"] == "stale"


def test_conditional_create_tenant_sends_if_none_exist_on_the_identifier() -> None:
    request = prepare_create(tenant(conditional=True), samples.heart_rate("p1", 72), "t1:k")
    assert request.dedup is DedupStrategy.CONDITIONAL_CREATE
    header = request.headers()["If-None-Exist"]
    assert unquote(header) == f"identifier={COMMAND_IDENTIFIER_SYSTEM}|t1:k"


def test_tenant_without_conditional_create_searches_first() -> None:
    request = prepare_create(tenant(Vendor.EPIC, False), samples.heart_rate("p1", 72), "t1:k")
    assert request.dedup is DedupStrategy.SEARCH_BEFORE_CREATE
    assert "If-None-Exist" not in request.headers()


@pytest.mark.parametrize("vendor", [Vendor.ATHENA, Vendor.VERADIGM])
def test_proprietary_api_vendors_write_through_their_api_deduplicated_by_fingerprint(
    vendor: Vendor,
) -> None:
    """athenaOne and Unity keep no identifier of ours: the create carries the vendor call and
    the FHIR projection read-back compares with, and deduplicates by content."""
    api = VendorApiSettings(base_url="http://ehr.test/api", practice_id="1", department_id="2")
    proprietary = tenant(vendor, False).model_copy(update={"vendor_api": api})
    request = prepare_create(proprietary, samples.heart_rate("p1", 72), "t1:k")

    assert request.vendor_call is not None
    assert request.dedup is DedupStrategy.FINGERPRINT
    assert request.expected is not None and "identifier" not in request.expected
    assert request.comparable_body() == request.expected


def test_athena_without_its_practice_is_refused_clearly() -> None:
    with pytest.raises(ResourceInvalid, match="practice_id and department_id"):
        prepare_create(tenant(Vendor.ATHENA, False), samples.heart_rate("p1", 72), "t1:k")


def test_proprietary_vendors_have_no_fhir_update() -> None:
    with pytest.raises(UnsupportedVendor, match="no FHIR write path"):
        prepare_update(tenant(Vendor.VERADIGM), samples.heart_rate("p1", 72), "Observation/1")


def test_differences_ignore_server_managed_and_extra_elements() -> None:
    sent = samples.heart_rate("p1", 72)
    stored = sent | {"id": "x", "meta": {"versionId": "1"}, "text": {"status": "generated"}}
    stored["issued"] = "2026-01-01T00:00:00Z"
    assert differences(sent, stored) == []


def test_differences_report_paths_not_values() -> None:
    sent = samples.heart_rate("p1", 72)
    stored = samples.heart_rate("p1", 73)
    stored["subject"] = {"reference": "Patient/p2"}
    del stored["category"]
    assert sorted(differences(sent, stored)) == [
        "category",
        "subject.reference",
        "valueQuantity.value",
    ]


def test_numbers_compare_by_value() -> None:
    assert differences({"valueQuantity": {"value": 72}}, {"valueQuantity": {"value": 72.0}}) == []


def test_list_length_change_is_a_difference() -> None:
    assert differences({"identifier": [1, 2]}, {"identifier": [1]}) == ["identifier"]


def fingerprint_tenant() -> Tenant:
    return tenant().model_copy(update={"capabilities": Capabilities(drops_identifiers=True)})


def test_fingerprint_search_narrows_an_observation_to_its_codes() -> None:
    """Fewer pages to read: only the patient's readings with one of our codes can be ours."""
    reading = samples.heart_rate("p1", 72)
    reading["code"]["coding"].append({"system": "urn:local", "code": "HR"})
    request = prepare_create(fingerprint_tenant(), reading, "t1:k")
    path, _, query = request.search_query().partition("?")

    assert path == "Observation"
    assert sorted(unquote(part) for part in query.split("&")) == [
        "_count=200",
        "code=http://loinc.org|8867-4,urn:local|HR",
        "patient=Patient/p1",
    ]


def test_fingerprint_search_is_not_narrowed_where_a_token_would_change_meaning() -> None:
    reading = samples.heart_rate("p1", 72)
    reading["code"]["coding"][0]["code"] = "8867-4,x"  # a comma would OR another code in
    note = samples.clinical_note("p1", "Seen today.", "enc-1")
    for resource in (reading, note):
        query = prepare_create(fingerprint_tenant(), resource, "t1:k").search_query()
        assert "code=" not in query and "type=" not in query and "_count=200" in query
