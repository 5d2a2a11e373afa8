"""Each family's withdrawn form (adapters/compensation.py), from the FHIR R4 value sets: what it
sets, that a withdrawn copy of the family's sample is recognised as withdrawn while the sample is
not, and that whatever withdrawn form a person chose counts too."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.compensation import WITHDRAWABLE_TYPES, is_withdrawn, withdrawal
from adapters.families import Family
from workers.family_samples import SINGLE_WRITES, care_plan, lab_report

CONDITION_VER = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_VER = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"

#: Each family's sample and the withdrawn form the R4 value set of its status element gives it.
EXPECTED: dict[Family, dict[str, Any]] = {
    Family.VITAL_SIGN: {"status": "entered-in-error"},
    Family.LABORATORY_RESULT: {"status": "entered-in-error"},
    Family.LABORATORY_REPORT: {"status": "entered-in-error"},
    Family.CLINICAL_NOTE: {"status": "entered-in-error"},
    Family.PROBLEM: {
        "verificationStatus": {"coding": [{"system": CONDITION_VER, "code": "entered-in-error"}]},
        "clinicalStatus": None,
    },
    Family.ENCOUNTER_DIAGNOSIS: {
        "verificationStatus": {"coding": [{"system": CONDITION_VER, "code": "entered-in-error"}]},
        "clinicalStatus": None,
    },
    Family.ALLERGY: {
        "verificationStatus": {"coding": [{"system": ALLERGY_VER, "code": "entered-in-error"}]},
        "clinicalStatus": None,
    },
    Family.MEDICATION_REQUEST: {"status": "entered-in-error"},
    Family.MEDICATION_STATEMENT: {"status": "entered-in-error"},
    Family.IMMUNIZATION: {"status": "entered-in-error"},
    Family.PROCEDURE: {"status": "entered-in-error"},
    Family.CARE_PLAN: {"status": "entered-in-error"},
    Family.GOAL: {"lifecycleStatus": "entered-in-error"},
}


def sample(family: Family) -> dict[str, Any]:
    if family is Family.LABORATORY_REPORT:
        return lab_report("pt-1", ["Observation/1"])
    if family is Family.CARE_PLAN:
        return care_plan("pt-1", ["Goal/1"])
    return SINGLE_WRITES[family]("pt-1")


def withdrawn(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource as the withdraw step writes it (activities/ehr_writes.py): the form set, an
    element it names as None removed."""
    form = withdrawal(resource["resourceType"])
    assert form is not None
    merged = {**resource, **form}
    return {key: value for key, value in merged.items() if value is not None}


@pytest.mark.parametrize("family", list(EXPECTED), ids=str)
def test_each_family_has_its_withdrawn_form(family: Family) -> None:
    assert withdrawal(sample(family)["resourceType"]) == EXPECTED[family]


@pytest.mark.parametrize("family", list(EXPECTED), ids=str)
def test_a_withdrawn_sample_is_recognised_and_the_sample_is_not(family: Family) -> None:
    resource = sample(family)
    assert not is_withdrawn(resource)
    assert is_withdrawn(withdrawn(resource))


@pytest.mark.parametrize("family", [Family.PROBLEM, Family.ALLERGY], ids=str)
def test_a_condition_or_allergy_withdrawn_loses_its_clinical_status(family: Family) -> None:
    """con-5 / ait-2: no clinicalStatus beside verificationStatus entered-in-error."""
    assert "clinicalStatus" in sample(family)
    assert "clinicalStatus" not in withdrawn(sample(family))


def test_a_goal_withdrawn_by_hand_is_recognised_by_its_lifecycle_status() -> None:
    goal = SINGLE_WRITES[Family.GOAL]("pt-1")
    assert "status" not in goal
    assert is_withdrawn({**goal, "lifecycleStatus": "entered-in-error"})
    assert not is_withdrawn({**goal, "lifecycleStatus": "cancelled"})


def test_a_condition_withdrawn_by_hand_keeping_its_clinical_status_counts() -> None:
    """A person's form: verificationStatus with a display, clinicalStatus left behind."""
    condition = SINGLE_WRITES[Family.PROBLEM]("pt-1")
    by_hand = {
        **condition,
        "verificationStatus": {
            "coding": [{"system": CONDITION_VER, "code": "entered-in-error", "display": "x"}]
        },
    }
    assert is_withdrawn(by_hand)


def test_revoked_and_cancelled_count_only_for_their_own_types() -> None:
    assert is_withdrawn({"resourceType": "ServiceRequest", "status": "revoked"})
    assert is_withdrawn({"resourceType": "Task", "status": "cancelled"})
    assert not is_withdrawn({"resourceType": "CarePlan", "status": "revoked"})
    assert not is_withdrawn({"resourceType": "Immunization", "status": "not-done"})


def test_every_family_but_provenance_can_be_withdrawn() -> None:
    assert {sample(family)["resourceType"] for family in EXPECTED} <= WITHDRAWABLE_TYPES
    assert withdrawal("Provenance") is None
    assert not is_withdrawn({"resourceType": "Provenance"})
