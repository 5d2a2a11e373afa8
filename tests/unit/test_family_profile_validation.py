"""Every clinical family is validated against its profile (issue #20): its US Core 6.1 profile, or
the one its ``meta.profile`` names, on top of the R4 structure and required bindings. Problems name
the element and a code, never a value."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhirpathpy.models import models

from adapters.families import DEFAULT_PROFILE, RESOURCE_TYPE, US_CORE, Family, family_of
from adapters.fhirpath_constraints import Constraint
from adapters.us_core_lab import ucum_problems
from adapters.us_core_profiles import PROFILE_CHECKS, TYPE_CHECKS, check_problems
from adapters.validation import ResourceInvalid, profiles_of, validate_resource
from tests.support.family_resources import every_sample, sample
from workers import family_samples, samples

CANARY = "Zq-CANARY-7Jane-Doe"
CONDITION_VERIFICATION = family_samples.CONDITION_VERIFICATION
SNOMED, RXNORM, UCUM = family_samples.SNOMED, family_samples.RXNORM, family_samples.UCUM


def problems_of(resource: dict[str, Any]) -> list[str]:
    with pytest.raises(ResourceInvalid) as caught:
        validate_resource(resource)
    return [str(problem) for problem in caught.value.problems]


def test_every_family_has_a_sample_that_passes_its_profile() -> None:
    resources = every_sample()
    assert {family_of(resource) for resource in resources} == set(Family)
    for resource in resources:
        assert validate_resource(resource) == resource["resourceType"]


def test_each_family_is_checked_against_its_default_profile() -> None:
    for family in Family:
        profiles, problems = profiles_of(RESOURCE_TYPE[family], sample(family))
        assert not problems
        assert profiles == ([DEFAULT_PROFILE[family]] if DEFAULT_PROFILE[family] else [])


def _pop(path: str) -> Callable[[dict[str, Any]], None]:
    return lambda r: r.pop(path)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda r: r.update({path: value})


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


ORGANIZATION = {"reference": "Organization/org-1"}
GROUP = {"reference": "Group/g1"}
LOCAL = _coded("http://example.org/local-codes", "x1")


def _edit(edit: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], None]:
    def change(resource: dict[str, Any]) -> None:
        edit(resource)

    return change


#: (family, what breaks it, the one problem expected): at least one rule of each family's profile
#: that the R4 structure alone would let through.
BROKEN: list[tuple[Family, Callable[[dict[str, Any]], None], str]] = [
    (Family.VITAL_SIGN, _set("category", [_coded("x", "y")]), "category: no_family_written"),
    (
        Family.LABORATORY_RESULT,
        _set("subject", ORGANIZATION),
        "subject.reference: reference_type_not_allowed (Patient)",
    ),
    (Family.LABORATORY_RESULT, _pop("valueQuantity"), "value[x]: missing"),
    (
        Family.LABORATORY_RESULT,
        _set("dataAbsentReason", {"text": "x"}),
        "dataAbsentReason: invariant_failed (obs-6)",
    ),
    (Family.LABORATORY_RESULT, _set("status", CANARY), "status: code_not_in_value_set"),
    (
        Family.LABORATORY_REPORT,
        _set("category", [_coded("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD")]),
        "category: coding_missing (http://terminology.hl7.org/CodeSystem/v2-0074#LAB)",
    ),
    (Family.LABORATORY_REPORT, _set("status", "done"), "status: code_not_in_value_set"),
    (Family.CLINICAL_NOTE, _set("status", "superseded"), "status: a new note must be 'current'"),
    (Family.PROBLEM, _pop("code"), "code: missing"),
    (Family.PROBLEM, _set("subject", {"reference": "Group/g1"}), "subject.reference: reference"),
    (
        Family.PROBLEM,
        _set("clinicalStatus", _coded(family_samples.CONDITION_CLINICAL, "cured")),
        "clinicalStatus: code_not_in_value_set",
    ),
    (
        Family.ENCOUNTER_DIAGNOSIS,
        _set(
            "verificationStatus", _coded(family_samples.CONDITION_VERIFICATION, "entered-in-error")
        ),
        "clinicalStatus: invariant_failed (con-5)",
    ),
    (Family.ALLERGY, _pop("code"), "code: missing"),
    (Family.ALLERGY, _pop("clinicalStatus"), "clinicalStatus: missing"),
    (Family.ALLERGY, _set("criticality", "severe"), "criticality: code_not_in_value_set"),
    (Family.MEDICATION_REQUEST, _set("intent", "wish"), "intent: code_not_in_value_set"),
    (
        Family.MEDICATION_REQUEST,
        _set("subject", {"reference": "Group/g1"}),
        "subject.reference: reference_type_not_allowed (Patient)",
    ),
    (Family.MEDICATION_STATEMENT, _set("status", "taking"), "status: code_not_in_value_set"),
    (Family.IMMUNIZATION, _set("status", "given"), "status: code_not_in_value_set"),
    (
        Family.IMMUNIZATION,
        _set("patient", {"reference": "Practitioner/pr-1"}),
        "patient.reference: reference_type_not_allowed (Patient)",
    ),
    (Family.PROCEDURE, _pop("performedDateTime"), "performed[x]: missing"),
    (Family.PROCEDURE, _pop("code"), "code: missing"),
    (
        Family.CARE_PLAN,
        _set("category", [_coded(family_samples.CAREPLAN_CATEGORY, "other")]),
        f"category: coding_missing ({family_samples.CAREPLAN_CATEGORY}#assess-plan)",
    ),
    (Family.GOAL, _set("lifecycleStatus", "done"), "lifecycleStatus: code_not_in_value_set"),
    (Family.GOAL, _set("subject", ORGANIZATION), "subject.reference: reference_type_not"),
    (Family.REFERRAL, _pop("code"), "code: missing"),
    (Family.REFERRAL, _set("intent", "wish"), "intent: code_not_in_value_set"),
    (Family.TASK, _set("status", "started"), "status: code_not_in_value_set"),
    (Family.COMMUNICATION, _set("status", "sent"), "status: code_not_in_value_set"),
    # more of each family, so that every family has at least three
    (Family.VITAL_SIGN, _set("status", "registered"), "status: must be one of"),
    (Family.VITAL_SIGN, _set("subject", GROUP), "subject: must reference a Patient"),
    (
        Family.LABORATORY_RESULT,
        _edit(lambda r: r["valueQuantity"].update(code="g", unit="g")),
        "valueQuantity.code: unit_not_for_loinc (2345-7: mg/dL|mmol/L)",
    ),
    (
        Family.LABORATORY_RESULT,
        _edit(lambda r: r["referenceRange"][0]["low"].update(code="mmol/L")),
        "referenceRange[0].low.code: unit_differs_from_value",
    ),
    (
        Family.LABORATORY_RESULT,
        _edit(lambda r: r["referenceRange"][0]["high"].update(system="http://example.org/u")),
        "referenceRange[0].high.system: not_ucum",
    ),
    (
        Family.LABORATORY_RESULT,
        _edit(
            lambda r: r["referenceRange"][0].update(
                low={"value": 1, "unit": "x", "system": UCUM, "code": "mg per dL"}
            )
        ),
        "referenceRange[0].low.code: not_well_formed_ucum",
    ),
    (
        Family.LABORATORY_RESULT,
        _edit(lambda r: r["interpretation"][0]["coding"][0].update(code="HIGHISH")),
        "interpretation[0].coding: code_not_in_code_system",
    ),
    (Family.LABORATORY_RESULT, _set("code", LOCAL), "code: code_system_missing (http://loinc.org)"),
    (Family.LABORATORY_REPORT, _set("code", LOCAL), "code: code_system_missing (http://loinc.org)"),
    (Family.LABORATORY_REPORT, _pop("effectiveDateTime"), "effective[x]: missing"),
    (
        Family.LABORATORY_REPORT,
        _set("result", [{"reference": "Patient/p1"}]),
        "result.reference: reference_type_not_allowed (Observation)",
    ),
    (
        Family.CLINICAL_NOTE,
        _set("category", [LOCAL]),
        "category: needs the US Core 'clinical-note'",
    ),
    (Family.CLINICAL_NOTE, _set("type", LOCAL), "type: needs a LOINC note type"),
    (Family.CLINICAL_NOTE, _set("subject", GROUP), "subject: must reference a Patient"),
    (
        Family.PROBLEM,
        _set("abatementDateTime", "2026-01-01"),
        "clinicalStatus: invariant_failed (con-4)",
    ),
    (
        Family.PROBLEM,
        _set("code", LOCAL),
        f"code: code_system_missing ({SNOMED}|http://hl7.org/fhir/sid/icd-10-cm)",
    ),
    (Family.ENCOUNTER_DIAGNOSIS, _set("code", LOCAL), "code: code_system_missing"),
    (Family.ENCOUNTER_DIAGNOSIS, _set("subject", GROUP), "subject.reference: reference_type"),
    (Family.ALLERGY, _set("code", LOCAL), f"code: code_system_missing ({RXNORM}|{SNOMED}|"),
    (
        Family.MEDICATION_REQUEST,
        _set("medicationCodeableConcept", LOCAL),
        f"medicationCodeableConcept: code_system_missing ({RXNORM})",
    ),
    (
        Family.MEDICATION_STATEMENT,
        _set("medicationCodeableConcept", LOCAL),
        f"medicationCodeableConcept: code_system_missing ({RXNORM})",
    ),
    (Family.MEDICATION_STATEMENT, _set("subject", GROUP), "subject.reference: reference_type"),
    (
        Family.IMMUNIZATION,
        _set("vaccineCode", LOCAL),
        "vaccineCode: code_system_missing (http://hl7.org/fhir/sid/cvx)",
    ),
    (Family.PROCEDURE, _set("code", LOCAL), f"code: code_system_missing ({SNOMED}|"),
    (Family.CARE_PLAN, _set("status", "ongoing"), "status: code_not_in_value_set"),
    (Family.CARE_PLAN, _set("subject", GROUP), "subject.reference: reference_type_not_allowed"),
    (Family.GOAL, _pop("description"), "description: missing"),
    (Family.REFERRAL, _set("subject", GROUP), "subject.reference: reference_type_not_allowed"),
    (Family.TASK, _set("intent", "wish"), "intent: code_not_in_value_set"),
    (Family.TASK, _pop("status"), "status: model_field_validation.missing"),
    (Family.COMMUNICATION, _pop("status"), "status: model_field_validation.missing"),
    (Family.COMMUNICATION, _set("status", CANARY), "status: code_not_in_value_set"),
    (
        Family.PROVENANCE,
        _set("agent", [{"who": {"reference": "Location/l1"}}]),
        "agent[0].who.reference: reference_type_not_allowed (Practitioner|",
    ),
    (Family.PROVENANCE, _pop("target"), "target: missing"),
    (Family.PROVENANCE, _pop("recorded"), "recorded: model_field_validation.missing"),
]


@pytest.mark.parametrize(
    ("family", "change", "expected"), BROKEN, ids=[f"{f}-{e.split(':')[0]}" for f, _, e in BROKEN]
)
def test_a_resource_that_breaks_its_profile_is_refused_by_path_and_code(
    family: Family, change: Callable[[dict[str, Any]], None], expected: str
) -> None:
    resource = copy.deepcopy(sample(family))
    change(resource)
    found = problems_of(resource)
    assert any(problem.startswith(expected) for problem in found), found
    assert not any(CANARY in problem for problem in found)


def test_every_family_has_at_least_three_broken_cases() -> None:
    counts = Counter(family for family, _, _ in BROKEN)
    assert {family: counts[family] for family in Family if counts[family] < 3} == {}


def test_r4b_models_have_the_r4_elements_of_every_family() -> None:
    """Structure is checked with fhir.resources' R4B models; the product writes R4. For these
    resources the two have the same elements (compared with fhirpathpy's R4 model)."""
    r4 = models["r4"]["path2Type"]
    for resource_type in set(RESOURCE_TYPE.values()):
        r4_elements = {path.split(".")[1] for path in r4 if path.startswith(resource_type + ".")}
        fields = get_fhir_model_class(resource_type).model_fields.values()
        r4b_elements = {field.alias for field in fields if field.alias}
        assert r4_elements <= r4b_elements, resource_type


def test_a_named_vital_sign_profile_fixes_the_code() -> None:
    resource = samples.heart_rate("p1", 72)
    resource["meta"] = {"profile": [US_CORE + "us-core-respiratory-rate|6.1.0"]}
    assert problems_of(resource) == ["code: coding_missing (http://loinc.org#9279-1)"]
    resource["meta"] = {"profile": [US_CORE + "us-core-heart-rate"]}
    assert validate_resource(resource) == "Observation"


def test_a_named_profile_of_the_type_is_checked_instead_of_the_family_default() -> None:
    """A problem-list entry that claims to be an encounter diagnosis is checked as one."""
    resource = family_samples.problem("p1")
    resource["meta"] = {"profile": [US_CORE + "us-core-condition-encounter-diagnosis"]}
    (problem,) = problems_of(resource)
    assert problem.startswith("category: coding_missing (")
    assert problem.endswith("#encounter-diagnosis)")


def test_a_named_profile_of_another_type_is_refused() -> None:
    resource = family_samples.procedure("p1")
    resource["meta"] = {"profile": ["http://example.org/p", US_CORE + "us-core-goal"]}
    assert problems_of(resource) == ["meta.profile[1]: profile_of_another_type"]


def test_a_profile_the_product_does_not_know_leaves_the_default() -> None:
    resource = family_samples.procedure("p1")
    resource["meta"] = {"profile": ["http://example.org/StructureDefinition/our-procedure"]}
    del resource["performedDateTime"]
    assert problems_of(resource) == ["performed[x]: missing"]


def test_an_observation_of_no_family_names_the_families_of_its_type() -> None:
    resource = samples.heart_rate("p1", 72)
    resource["category"] = [_coded(family_samples.OBSERVATION_CATEGORY, "social-history")]
    assert problems_of(resource) == ["category: no_family_written (vital-sign|laboratory-result)"]


def test_a_withdrawn_allergy_needs_no_clinical_status_and_may_not_have_one() -> None:
    resource = family_samples.allergy("p1")
    resource["verificationStatus"] = _coded(family_samples.ALLERGY_VERIFICATION, "entered-in-error")
    assert problems_of(resource) == ["clinicalStatus: invariant_failed (ait-2)"]
    del resource["clinicalStatus"]
    assert validate_resource(resource) == "AllergyIntolerance"


def _nested(depth: int) -> Any:
    node: Any = "x"
    for level in range(depth):
        node = {"extension": node} if level % 2 else [node]
    return node


ODD_VALUES = [_nested(30), "A" * (1 << 20), 12345, None, [None], {"coding": "x"}, [[[]]], True]


@pytest.mark.parametrize("family", list(Family), ids=str)
def test_the_profile_checks_never_raise_even_on_input_that_is_not_r4(family: Family) -> None:
    """Structure is checked first, so the checks see R4 only; but should a check ever see
    anything else (deep nesting, a megabyte string, any JSON type where an element is), the
    FHIRPath engine and the UCUM check answer with problems, they do not raise."""
    base = sample(family)
    profiles, _ = profiles_of(RESOURCE_TYPE[family], base)
    checks = [*TYPE_CHECKS[RESOURCE_TYPE[family]]]
    checks += [check for profile in profiles for check in PROFILE_CHECKS[profile]]
    ours = [check for check in checks if isinstance(check, Constraint) or check is ucum_problems]
    for name in [*base, "valueQuantity", "referenceRange", "meta", "component", "interpretation"]:
        for odd in ODD_VALUES:
            check_problems(ours, {**base, name: odd})
