"""Problems, encounter diagnoses and allergies: US Core Condition Problems and Health Concerns,
US Core Condition Encounter Diagnosis and US Core AllergyIntolerance (hl7.org/fhir/us/core/STU6.1),
as constraints.

Besides each profile's mandatory elements (its category, a code, the patient): the R4 required
bindings of the clinical and verification statuses, R4's invariants on them (con-4, con-5, ait-1,
ait-2), and the code systems the profiles bind the code to: SNOMED CT or ICD-10-CM for a
condition; RxNorm, SNOMED CT or NDF-RT for an allergen. (R4's con-3, a clinical status on a
problem-list item, is a warning there: not enforced.)
"""

from __future__ import annotations

from adapters.code_systems import (
    ALLERGY_CLINICAL,
    ALLERGY_VERIFICATION,
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
    CONDITION_VERIFICATION,
    RXNORM,
    SNOMED,
)
from adapters.families import US_CORE_CONDITION_CATEGORY
from adapters.fhirpath_constraints import (
    MISSING,
    Constraint,
    code_in,
    coded_in_systems,
    concept_in,
    has_coding,
    patient,
    required,
)

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
NDFRT = "http://hl7.org/fhir/ndfrt"


def _entered_in_error(system: str) -> str:
    return (
        f"verificationStatus.coding.where(system = '{system}' and code = 'entered-in-error')"
        ".exists()"
    )


CONDITION_BASE = [
    concept_in(
        "clinicalStatus",
        CONDITION_CLINICAL,
        ["active", "recurrence", "relapse", "inactive", "remission", "resolved"],
    ),
    concept_in(
        "verificationStatus",
        CONDITION_VERIFICATION,
        ["unconfirmed", "provisional", "differential", "confirmed", "refuted", "entered-in-error"],
    ),
    Constraint(
        "clinicalStatus",
        f"abatement.empty() or clinicalStatus.coding.where(system = '{CONDITION_CLINICAL}'"
        " and code in ('inactive' | 'resolved' | 'remission')).exists()",
        "invariant_failed (con-4)",
    ),
    Constraint(
        "clinicalStatus",
        f"{_entered_in_error(CONDITION_VERIFICATION)}.not() or clinicalStatus.empty()",
        "invariant_failed (con-5)",
    ),
]

_CONDITION = [
    *required("code"),
    coded_in_systems("code", SNOMED, ICD10CM),
    *patient("subject"),
]

PROBLEM = [
    Constraint(
        "category",
        f"category.coding.where(system in ('{CONDITION_CATEGORY}' | '{US_CORE_CONDITION_CATEGORY}')"
        " and code in ('problem-list-item' | 'health-concern')).exists()",
        f"coding_missing ({CONDITION_CATEGORY}#problem-list-item)",
    ),
    *_CONDITION,
]

ENCOUNTER_DIAGNOSIS = [
    has_coding("category", CONDITION_CATEGORY, "encounter-diagnosis"),
    *_CONDITION,
]

ALLERGY_BASE = [
    concept_in("clinicalStatus", ALLERGY_CLINICAL, ["active", "inactive", "resolved"]),
    concept_in(
        "verificationStatus",
        ALLERGY_VERIFICATION,
        ["unconfirmed", "confirmed", "refuted", "entered-in-error"],
    ),
    code_in("type", ["allergy", "intolerance"]),
    code_in("criticality", ["low", "high", "unable-to-assess"]),
    Constraint(
        "clinicalStatus",
        f"{_entered_in_error(ALLERGY_VERIFICATION)} or clinicalStatus.exists()",
        MISSING,
    ),
    Constraint(
        "clinicalStatus",
        f"{_entered_in_error(ALLERGY_VERIFICATION)}.not() or clinicalStatus.empty()",
        "invariant_failed (ait-2)",
    ),
]

ALLERGY = [
    *required("code"),
    coded_in_systems("code", RXNORM, SNOMED, NDFRT),
    *patient("patient"),
]
