"""Validation before anything is sent: R4 structure, then US Core vital-sign rules (the other
families: tests/unit/test_family_profile_validation.py)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters import us_core_profiles
from adapters.families import US_CORE
from adapters.validation import ResourceInvalid, validate_resource
from workers import samples


def problems_of(resource: dict[str, Any]) -> list[str]:
    with pytest.raises(ResourceInvalid) as caught:
        validate_resource(resource)
    return [str(problem) for problem in caught.value.problems]


@pytest.mark.parametrize(
    "resource",
    [
        samples.heart_rate("p1", 72),
        samples.blood_pressure("p1", 120, 80),
        samples.body_temperature("p1", 37.0),
    ],
)
def test_us_core_vital_signs_pass(resource: dict[str, Any]) -> None:
    assert validate_resource(resource) == "Observation"


def test_missing_resource_type_is_named() -> None:
    assert problems_of({"status": "final"}) == ["resourceType: missing"]


def test_unsupported_resource_type_lists_what_is_supported() -> None:
    (problem,) = problems_of({"resourceType": "Patient", "name": [{"family": "Secret"}]})
    assert problem == (
        "resourceType: not a supported write type (supported: AllergyIntolerance, CarePlan, "
        "Communication, Condition, DiagnosticReport, DocumentReference, Goal, Immunization, "
        "MedicationRequest, MedicationStatement, Observation, Procedure, Provenance, "
        "ServiceRequest, Task)"
    )


def test_structure_errors_name_the_field_but_never_the_value() -> None:
    resource = samples.heart_rate("p1", 72)
    resource["valueQuantity"]["value"] = "seventy-two"
    resource["effectiveDateTime"] = "Jane Doe"
    found = problems_of(resource)
    assert any(p.startswith("valueQuantity.value") for p in found)
    assert any(p.startswith("effectiveDateTime") for p in found)
    assert not any("seventy-two" in p or "Jane Doe" in p for p in found)


def test_blood_pressure_needs_both_components() -> None:
    resource = samples.blood_pressure("p1", 120, 80)
    resource["component"] = resource["component"][:1]
    assert problems_of(resource) == ["component: blood pressure needs component 8462-4"]


def test_blood_pressure_component_unit_must_be_mmhg() -> None:
    resource = samples.blood_pressure("p1", 120, 80)
    resource["component"][1]["valueQuantity"]["code"] = "kPa"
    (problem,) = problems_of(resource)
    assert problem.startswith("component[1].valueQuantity.code: unit not allowed for LOINC 8462-4")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r.update(status="registered"), "status: must be one of"),
        (lambda r: r.update(category=[]), "category: no_family_written (vital-sign|"),
        (
            lambda r: r.update(code={"coding": [{"system": "http://loinc.org", "code": "1-8"}]}),
            "code: needs a LOINC vital-sign code",
        ),
        (
            lambda r: r.update(subject={"reference": "Device/1"}),
            "subject: must reference a Patient",
        ),
        (lambda r: r.pop("effectiveDateTime"), "effective[x]: a vital sign needs the time"),
        (lambda r: r["valueQuantity"].pop("system"), "valueQuantity.system: must be UCUM"),
        (lambda r: r.pop("valueQuantity"), "valueQuantity: a vital sign needs a valueQuantity"),
    ],
)
def test_clinical_rules(change: Any, expected: str) -> None:
    resource = samples.heart_rate("p1", 72)
    change(resource)
    assert any(p.startswith(expected) for p in problems_of(resource))


def test_data_absent_reason_replaces_the_value() -> None:
    resource = samples.heart_rate("p1", 72)
    del resource["valueQuantity"]
    resource["dataAbsentReason"] = {"text": "patient refused"}
    assert validate_resource(resource) == "Observation"


CANARY = "Zq-CANARY-7Jane-Doe"


@pytest.mark.parametrize(
    "change",
    [
        # fhir.resources names what it got instead of a Coding, Quantity… ("but got ``…``")
        lambda r: r["code"]["coding"].__setitem__(0, {"resourceType": CANARY}),
        lambda r: r.update(valueQuantity={"resourceType": CANARY}),
        lambda r: r.update(note=[{CANARY: 1}]),
        # fhir.resources raised KeyError('R4.<value>Type') for an unknown contained type
        lambda r: r.update(contained=[{"resourceType": CANARY}]),
        # an element name that is not one: its path segment is not echoed either
        lambda r: r["subject"].update({CANARY: "x"}),
    ],
)
def test_hostile_structure_is_invalid_with_paths_and_codes_only(change: Any) -> None:
    resource = samples.heart_rate("p1", 72)
    change(resource)
    found = problems_of(resource)
    assert found
    assert not any(CANARY in p or "Jane" in p for p in found), found


def test_structure_problems_are_fhirpath_paths_with_pydantic_codes() -> None:
    resource = samples.blood_pressure("p1", 120, 80)
    resource["component"][1]["valueQuantity"]["value"] = "eighty"
    del resource["code"]
    assert problems_of(resource) == [
        "code: missing",
        "component[1].valueQuantity.value: value_error",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # FHIR JSON has no nulls: the clinical rules crashed on them (TypeError, AttributeError)
        (lambda r: r.update(category=None), "category: null_not_allowed"),
        (lambda r: r.update(subject=None), "subject: null_not_allowed"),
        (lambda r: r["code"].update(coding=None), "code.coding: null_not_allowed"),
        (lambda r: r.update(category=[None]), "category[0]: null_not_allowed"),
    ],
)
def test_null_elements_are_invalid_not_a_crash(change: Any, expected: str) -> None:
    resource = samples.heart_rate("p1", 72)
    change(resource)
    assert expected in problems_of(resource)


def test_a_primitive_extension_array_may_hold_nulls() -> None:
    """FHIR JSON's one use of null: keeping a repeating primitive and its extensions aligned."""
    resource = samples.heart_rate("p1", 72)
    resource["meta"] = {
        "profile": ["http://example.org/a", "http://example.org/b"],
        "_profile": [None, {"id": "p2"}],
    }
    assert validate_resource(resource) == "Observation"


def test_a_rule_that_breaks_on_odd_input_makes_it_unprocessable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(resource: dict[str, Any]) -> list[Any]:
        raise KeyError(CANARY)

    monkeypatch.setitem(us_core_profiles.PROFILE_CHECKS, US_CORE + "us-core-vital-signs", [broken])
    assert problems_of(samples.heart_rate("p1", 72)) == ["Observation: unprocessable (KeyError)"]
