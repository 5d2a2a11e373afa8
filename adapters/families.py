"""Clinical families: what kind of clinical artifact a resource is, beyond its FHIR type.

A vendor accepts, and a US Core profile constrains, a *family* rather than a resource type: Epic
files a vital-sign Observation through one API and a laboratory Observation through another (or
not at all); a problem-list Condition and an encounter diagnosis are different US Core profiles.
Everything that depends on what a write is (validation, a vendor's support, samples, the README's
type x vendor table) names its family from here.

A family is found from the resource alone (``resourceType`` and, for Observation and Condition,
its category), never from a value that could identify a patient.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from adapters.code_systems import CONDITION_CATEGORY, OBSERVATION_CATEGORY

US_CORE_CONDITION_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/condition-category"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/"


class Family(StrEnum):
    """A clinical family the product writes (README: "What it writes")."""

    VITAL_SIGN = "vital-sign"
    LABORATORY_RESULT = "laboratory-result"
    LABORATORY_REPORT = "laboratory-report"
    CLINICAL_NOTE = "clinical-note"
    PROBLEM = "problem"
    ENCOUNTER_DIAGNOSIS = "encounter-diagnosis"
    ALLERGY = "allergy"
    MEDICATION_REQUEST = "medication-request"
    MEDICATION_STATEMENT = "medication-statement"
    IMMUNIZATION = "immunization"
    PROCEDURE = "procedure"
    CARE_PLAN = "care-plan"
    GOAL = "goal"
    REFERRAL = "referral"
    TASK = "task"
    COMMUNICATION = "communication"
    PROVENANCE = "provenance"


#: The resource type of each family.
RESOURCE_TYPE: dict[Family, str] = {
    Family.VITAL_SIGN: "Observation",
    Family.LABORATORY_RESULT: "Observation",
    Family.LABORATORY_REPORT: "DiagnosticReport",
    Family.CLINICAL_NOTE: "DocumentReference",
    Family.PROBLEM: "Condition",
    Family.ENCOUNTER_DIAGNOSIS: "Condition",
    Family.ALLERGY: "AllergyIntolerance",
    Family.MEDICATION_REQUEST: "MedicationRequest",
    Family.MEDICATION_STATEMENT: "MedicationStatement",
    Family.IMMUNIZATION: "Immunization",
    Family.PROCEDURE: "Procedure",
    Family.CARE_PLAN: "CarePlan",
    Family.GOAL: "Goal",
    Family.REFERRAL: "ServiceRequest",
    Family.TASK: "Task",
    Family.COMMUNICATION: "Communication",
    Family.PROVENANCE: "Provenance",
}

#: The profile a resource of the family is checked against when its ``meta.profile`` names none
#: the product knows (US Core 6.1; None: the base R4 resource, US Core has no profile for it).
DEFAULT_PROFILE: dict[Family, str | None] = {
    Family.VITAL_SIGN: US_CORE + "us-core-vital-signs",
    Family.LABORATORY_RESULT: US_CORE + "us-core-observation-lab",
    Family.LABORATORY_REPORT: US_CORE + "us-core-diagnosticreport-lab",
    Family.CLINICAL_NOTE: US_CORE + "us-core-documentreference",
    Family.PROBLEM: US_CORE + "us-core-condition-problems-health-concerns",
    Family.ENCOUNTER_DIAGNOSIS: US_CORE + "us-core-condition-encounter-diagnosis",
    Family.ALLERGY: US_CORE + "us-core-allergyintolerance",
    Family.MEDICATION_REQUEST: US_CORE + "us-core-medicationrequest",
    Family.MEDICATION_STATEMENT: None,
    Family.IMMUNIZATION: US_CORE + "us-core-immunization",
    Family.PROCEDURE: US_CORE + "us-core-procedure",
    Family.CARE_PLAN: US_CORE + "us-core-careplan",
    Family.GOAL: US_CORE + "us-core-goal",
    Family.REFERRAL: US_CORE + "us-core-servicerequest",
    Family.TASK: None,
    Family.COMMUNICATION: None,
    Family.PROVENANCE: US_CORE + "us-core-provenance",
}

#: Families of a resource type that has only one.
_ONLY_FAMILY: dict[str, Family] = {
    resource_type: family
    for family, resource_type in RESOURCE_TYPE.items()
    if list(RESOURCE_TYPE.values()).count(resource_type) == 1
}

#: Category codes (any system above) that decide the family of an Observation or a Condition.
_BY_CATEGORY: dict[str, dict[str, Family]] = {
    "Observation": {
        "vital-signs": Family.VITAL_SIGN,
        "laboratory": Family.LABORATORY_RESULT,
    },
    "Condition": {
        "problem-list-item": Family.PROBLEM,
        "health-concern": Family.PROBLEM,
        "encounter-diagnosis": Family.ENCOUNTER_DIAGNOSIS,
    },
}
_CATEGORY_SYSTEMS = frozenset(
    {OBSERVATION_CATEGORY, CONDITION_CATEGORY, US_CORE_CONDITION_CATEGORY}
)


def category_codes(resource: dict[str, Any]) -> list[str]:
    """The resource's category codes in the Observation and Condition category systems."""
    categories = resource.get("category")
    codes: list[str] = []
    for concept in categories if isinstance(categories, list) else []:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for coding in codings if isinstance(codings, list) else []:
            if isinstance(coding, dict) and coding.get("system") in _CATEGORY_SYSTEMS:
                codes.append(str(coding.get("code")))
    return codes


def family_of(resource: dict[str, Any]) -> Family | None:
    """The resource's family; None when it is of no family the product writes (an unknown type,
    or an Observation or Condition whose category names none)."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return None
    if resource_type in _ONLY_FAMILY:
        return _ONLY_FAMILY[resource_type]
    by_code = _BY_CATEGORY.get(resource_type, {})
    for code in category_codes(resource):
        if code in by_code:
            return by_code[code]
    return None


def families_of_type(resource_type: str) -> list[Family]:
    """Every family written as ``resource_type`` (for reasons that list what a type may be)."""
    return [family for family, of_type in RESOURCE_TYPE.items() if of_type == resource_type]
