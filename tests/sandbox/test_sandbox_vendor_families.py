"""The personalities enforce what each vendor documents a create for (docs/vendors.md quirks 16-18):
Epic refuses a type or an Observation / Condition category it has no create API for, Oracle Health
a type or an Observation category Millennium R4 does not create; athena's chart API files a
problem that its FHIR then shows as a Condition."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from support.sandbox_process import observation

OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
PROVISIONAL = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": "provisional",
        }
    ]
}
PRACTICE = {"ah-practice": "Organization/a-1.Practice-195900"}


def categorized_observation(category: str) -> dict[str, Any]:
    return {
        **observation(),
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}],
    }


def condition(category: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "verificationStatus": PROVISIONAL,
        "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
        "subject": {"reference": "Patient/p1"},
    }


IMMUNIZATION = {
    "resourceType": "Immunization",
    "status": "completed",
    "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]},
    "patient": {"reference": "Patient/p1"},
    "occurrenceDateTime": "2026-11-01",
}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("Observation", categorized_observation("laboratory")),
        ("Condition", condition("encounter-diagnosis")),
        ("Condition", condition("health-concern")),
        ("Immunization", IMMUNIZATION),
    ],
)
def test_epic_refuses_what_it_has_no_create_api_for_with_an_empty_403(
    client: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    refused = client.post(f"/fhir/demo-epic/{path}", json=body)
    assert refused.status_code == 403 and refused.content == b""


def test_epic_takes_a_vital_sign_and_a_problem(client: httpx.Client) -> None:
    vital = client.post("/fhir/demo-epic/Observation", json=categorized_observation("vital-signs"))
    problem = client.post("/fhir/demo-epic/Condition", json=condition("problem-list-item"))
    assert (vital.status_code, problem.status_code) == (201, 201)


def test_oracle_health_refuses_an_undocumented_type_and_observation_category(
    client: httpx.Client,
) -> None:
    immunization = client.post("/fhir/demo-cerner/Immunization", json=IMMUNIZATION)
    assert immunization.status_code == 403
    assert immunization.json()["resourceType"] == "OperationOutcome"
    survey = client.post("/fhir/demo-cerner/Observation", json=categorized_observation("survey"))
    assert survey.status_code == 422
    assert survey.json()["issue"][0]["expression"] == ["Observation.category"]
    concern = client.post("/fhir/demo-cerner/Condition", json=condition("health-concern"))
    assert concern.status_code == 422
    lab = client.post("/fhir/demo-cerner/Observation", json=categorized_observation("laboratory"))
    diagnosis = client.post("/fhir/demo-cerner/Condition", json=condition("encounter-diagnosis"))
    assert (lab.status_code, diagnosis.status_code) == (201, 201)


def test_athena_chart_problem_is_shown_as_a_fhir_condition(client: httpx.Client) -> None:
    patient = f"p{uuid.uuid4().hex[:8]}"
    form = {"departmentid": "1", "snomedcode": "38341003", "startdate": "03/04/2025"}
    answer = client.post(f"/athena/demo-athena/v1/195900/chart/{patient}/problems", data=form)
    assert answer.status_code == 200 and answer.json()["success"] is True
    problem_id = answer.json()["problemid"]

    read = client.get(f"/fhir/demo-athena/Condition/a-195900.problem-{problem_id}", params=PRACTICE)
    assert read.status_code == 200
    stored = read.json()
    assert stored["code"]["coding"][0] == {"system": "http://snomed.info/sct", "code": "38341003"}
    assert stored["onsetDateTime"] == "2025-03-04"
    assert stored["subject"] == {"reference": f"Patient/{patient}"}
    assert stored["clinicalStatus"]["coding"][0]["code"] == "active"


@pytest.mark.parametrize(
    "form",
    [
        {"snomedcode": "38341003"},
        {"departmentid": "1", "snomedcode": "I10"},
        {"departmentid": "1", "snomedcode": "38341003", "startdate": "2025-03-04"},
    ],
)
def test_athena_chart_problem_refuses_a_malformed_form(
    client: httpx.Client, form: dict[str, str]
) -> None:
    answer = client.post("/athena/demo-athena/v1/195900/chart/p1/problems", data=form)
    assert answer.status_code == 400 and "error" in answer.json()
