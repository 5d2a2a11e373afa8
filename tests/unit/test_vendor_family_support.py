"""Which families each vendor writes, without I/O: the refusal the validate step and the HTTP
API's door raise (vendor and family named, no value), and athenaOne's problem planner (the chart
API call and the FHIR Condition athena's FHIR shows for it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.command_steps import CommandSteps
from activities.models import CommandInput
from adapters import athena
from adapters.athena import AthenaApiSettings
from adapters.caller_keys import CallerRegistry
from adapters.code_systems import SNOMED
from adapters.families import RESOURCE_TYPE, Family
from adapters.problems import ResourceInvalid
from adapters.proprietary import AnswerKind, VendorCall
from adapters.tenants import (
    DEFAULT_TENANTS_FILE,
    Capabilities,
    Interaction,
    Tenant,
    TenantRegistry,
    Vendor,
    load_tenants,
)
from adapters.vendor import adapter_for, family_refusal
from workers.family_samples import SINGLE_WRITES, problem

API = AthenaApiSettings(base_url="http://ehr.test/api", practice_id="195900", department_id="7")
ATHENA = Tenant(
    id="t1",
    vendor=Vendor.ATHENA,
    fhir_base_url="http://ehr.test/fhir",
    allow_insecure_http=True,
    capabilities=Capabilities(writable={"Condition": [Interaction.CREATE]}),
    vendor_api=API,
)


@pytest.mark.parametrize("vendor", [Vendor.EPIC, Vendor.VERADIGM])
def test_an_immunization_is_refused_naming_family_and_vendor(vendor: Vendor) -> None:
    refusal = family_refusal(adapter_for(vendor), SINGLE_WRITES[Family.IMMUNIZATION]("p1"))
    assert refusal is not None
    assert (
        str(refusal) == f"resourceType: family 'immunization' is not written to vendor '{vendor}'"
    )


def test_a_family_the_vendor_writes_and_a_resource_of_no_family_are_not_refused() -> None:
    epic = adapter_for(Vendor.EPIC)
    assert family_refusal(epic, SINGLE_WRITES[Family.ALLERGY]("p1")) is None
    assert family_refusal(epic, {"resourceType": "Observation", "status": "final"}) is None


def test_a_laboratory_result_is_refused_where_only_vital_signs_are_written() -> None:
    """Same type, another family: Epic's Observation create files vital signs only."""
    lab = SINGLE_WRITES[Family.LABORATORY_RESULT]("p1")
    assert family_refusal(adapter_for(Vendor.EPIC), lab) is not None
    assert family_refusal(adapter_for(Vendor.CERNER), lab) is None


def test_generic_r4_writes_every_family() -> None:
    assert adapter_for(Vendor.GENERIC_R4).families == frozenset(Family)


def test_athena_problem_is_a_chart_problem_by_snomed_code_with_its_onset_date() -> None:
    resource = problem("p 1")
    resource["onsetDateTime"] = "2025-03-04T22:30:00+00:00"
    call, projection = athena.plan(ATHENA, resource)

    assert call.answer == AnswerKind.ATHENA_PROBLEM
    assert call.path == "v1/195900/chart/p%201/problems"
    assert call.form == {"departmentid": "7", "snomedcode": "38341003", "startdate": "03/04/2025"}
    assert call.id_prefix == "a-195900.problem-"
    assert projection["resourceType"] == "Condition"
    assert projection["code"] == {"coding": [{"system": SNOMED, "code": "38341003"}]}
    assert projection["onsetDateTime"] == "2025-03-04"
    assert projection["subject"] == {"reference": "Patient/p 1"}
    assert projection["category"][0]["coding"][0]["code"] == "problem-list-item"


def test_athena_problem_without_onset_sends_no_startdate() -> None:
    resource = problem("p1")
    del resource["onsetDateTime"]
    call, projection = athena.plan(ATHENA, resource)
    assert call.form is not None and "startdate" not in call.form
    assert "onsetDateTime" not in projection


def _with(resource: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**resource, **changes}


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"code": {"text": "no codes"}}, "code"),
        (
            {"code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"}]}},
            "code",
        ),
        (
            {
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "resolved",
                        }
                    ]
                }
            },
            "clinicalStatus",
        ),
        ({"onsetDateTime": "not a date"}, "onsetDateTime"),
    ],
)
def test_athena_refuses_a_problem_its_chart_api_cannot_file(
    changes: dict[str, Any], path: str
) -> None:
    with pytest.raises(ResourceInvalid) as refused:
        athena.plan(ATHENA, _with(problem("p1"), **changes))
    assert [p.path for p in refused.value.problems] == [path]


def test_athena_problem_answer_maps_to_the_fhir_id() -> None:
    call = VendorCall(answer=AnswerKind.ATHENA_PROBLEM, path="x", id_prefix="a-1.problem-")
    assert athena.vendor_id(call, {"success": True, "problemid": 4711}) == "4711"


@pytest.mark.parametrize("vendor", [Vendor.EPIC, Vendor.CERNER])
def test_a_health_concern_is_refused_where_condition_create_files_problem_list_items(
    vendor: Vendor,
) -> None:
    """A health concern is of the problem family, but Epic's "Condition.Create (Problems)" and
    Oracle Health's "Create a condition" take problem-list items (and diagnoses) only: refused at
    the map step, naming the category (docs/vendors.md quirks 16, 17)."""
    concern = problem("p1")
    concern["category"][0]["coding"][0]["code"] = "health-concern"
    concern["verificationStatus"]["coding"][0]["code"] = "provisional"
    (refusal,) = adapter_for(vendor).create_problems(concern)
    assert refusal.path == "category"
    assert (
        adapter_for(vendor).create_problems(
            {**problem("p1"), "verificationStatus": concern["verificationStatus"]}
        )
        == []
    )


def test_the_demo_tenants_allow_every_family_their_vendor_writes() -> None:
    """Issue #20 acceptance 4: on a fresh `writeback dev`, each family sample can be written to
    every demo tenant whose vendor writes it (the embedded default configuration)."""
    for demo in load_tenants(DEFAULT_TENANTS_FILE):
        written = {RESOURCE_TYPE[family] for family in demo.adapter().families}
        allowed = {
            rtype for rtype in written if demo.capabilities.allows(rtype, Interaction.CREATE)
        }
        assert allowed == written, demo.id


async def test_a_tenant_that_does_not_allow_the_type_still_refuses_a_family_its_vendor_writes() -> (
    None
):
    """The vendor's families say what can be written at all; the tenant's capabilities what this
    tenant takes: an allergy passes Epic's family check at the validate step, and the tenant
    that allows only Observation refuses it at the authorize step, before any request."""
    observations_only = Tenant(
        id="t-obs",
        vendor=Vendor.EPIC,
        fhir_base_url="http://ehr.test/fhir",
        allow_insecure_http=True,
        caller_auth="unauthenticated",
        capabilities=Capabilities(writable={"Observation": [Interaction.CREATE]}),
    )
    steps = CommandSteps(TenantRegistry([observations_only], source="test"), CallerRegistry())
    allergy = CommandInput(
        tenant="t-obs",
        resource=SINGLE_WRITES[Family.ALLERGY]("p1"),
        command_identifier="t-obs:1",
        requested_by="cli",
        requested_at=datetime.now(UTC),
    )
    validated = await steps.validate(allergy)
    assert validated.resource_type == "AllergyIntolerance"
    with pytest.raises(ApplicationError) as refused:
        await steps.authorize(allergy)
    assert refused.value.type == "unsupported"
    assert "does not accept create of AllergyIntolerance" in refused.value.message
