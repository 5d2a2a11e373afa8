"""What each clinical family is checked against before it is written: the R4 required bindings
of its resource type, then its US Core 6.1 profile (hl7.org/fhir/us/core/STU6.1).

Which profile: every profile the resource's ``meta.profile`` names that the product knows for its
resource type (a canonical's ``|version`` is ignored), else its family's default
(adapters/families.py ``DEFAULT_PROFILE``). A declared profile the product does not know is not a
reason to refuse, and is not mentioned: it may be a vendor's or a project's own, usually derived
from US Core, and the family's default still applies. A known profile of *another* resource type
is refused (adapters/validation.py ``profiles_of``).

Each profile is data: FHIRPath constraints (adapters/fhirpath_constraints.py, evaluated with
fhirpathpy) in one module per group of families (us_core_lab, us_core_conditions,
us_core_medications, us_core_care), plus the few checks FHIRPath cannot make offline, in Python:
well-formed UCUM (adapters/ucum.py), and the vital signs' and clinical notes' own rules
(adapters/vital_signs.py, adapters/clinical_notes.py: a LOINC code and UCUM unit US Core names for
the vital sign, a ``clinical-note`` category), which predate this and are stricter than the
profile.

A profile's rules are its *mandatory* elements beyond the base resource (must-support elements
are a server's obligation, not a sender's), its fixed slices and codes, the reference targets it
narrows to the patient, the invariants a sender can break, and the code systems its bindings name
where the product can tell offline.

Structure stays fhir.resources' R4B models (adapters/validation.py): R4B changed none of the
elements these constraints read for these resources (its changes are to medication definition,
evidence, subscriptions and a few others), so an R4 resource these checks accept is R4-valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapters import us_core_care as care
from adapters import us_core_conditions as conditions
from adapters import us_core_lab as lab
from adapters import us_core_medications as medications
from adapters.clinical_notes import check_clinical_note
from adapters.code_systems import LOINC
from adapters.families import DEFAULT_PROFILE, US_CORE, Family
from adapters.fhirpath_constraints import Constraint, Rule, constraint_problems, has_coding
from adapters.problems import Problem
from adapters.vital_signs import check_vital_sign

#: A profile's checks: FHIRPath constraints, or a check in Python.
Check = Constraint | Rule

#: The vital-sign profiles whose LOINC code the product knows (adapters/vital_signs.py), each
#: with the code it fixes; each is checked as US Core Vital Signs plus that code.
VITAL_SIGN_PROFILES: dict[str, str] = {
    US_CORE + "us-core-heart-rate": "8867-4",
    US_CORE + "us-core-respiratory-rate": "9279-1",
    US_CORE + "us-core-body-temperature": "8310-5",
    US_CORE + "us-core-body-weight": "29463-7",
    US_CORE + "us-core-body-height": "8302-2",
    US_CORE + "us-core-bmi": "39156-5",
    US_CORE + "us-core-pulse-oximetry": "59408-5",
    US_CORE + "us-core-blood-pressure": "85354-9",
}

#: Per resource type, the checks every resource of the type passes (the base resource's required
#: bindings; for a type without a US Core profile, the product's own rules too).
TYPE_CHECKS: dict[str, Sequence[Check]] = {
    "Observation": lab.OBSERVATION_BASE,
    "DiagnosticReport": [],
    "DocumentReference": care.DOCUMENT_REFERENCE_BASE,
    "Condition": conditions.CONDITION_BASE,
    "AllergyIntolerance": conditions.ALLERGY_BASE,
    "MedicationRequest": medications.MEDICATION_REQUEST_BASE,
    "MedicationStatement": medications.MEDICATION_STATEMENT_BASE,
    "Immunization": medications.IMMUNIZATION_BASE,
    "Procedure": care.PROCEDURE_BASE,
    "CarePlan": care.CAREPLAN_BASE,
    "Goal": care.GOAL_BASE,
    "ServiceRequest": care.SERVICE_REQUEST_BASE,
    "Task": care.TASK_BASE,
    "Communication": care.COMMUNICATION_BASE,
    "Provenance": care.PROVENANCE_BASE,
}

#: Profile URL -> its checks on top of its type's.
PROFILE_CHECKS: dict[str, Sequence[Check]] = {
    US_CORE + "us-core-vital-signs": [check_vital_sign],
    **{
        url: [check_vital_sign, has_coding("code", LOINC, code)]
        for url, code in VITAL_SIGN_PROFILES.items()
    },
    US_CORE + "us-core-observation-lab": [*lab.LAB_RESULT, lab.ucum_problems],
    US_CORE + "us-core-diagnosticreport-lab": lab.LAB_REPORT,
    US_CORE + "us-core-documentreference": [check_clinical_note],
    US_CORE + "us-core-condition-problems-health-concerns": conditions.PROBLEM,
    US_CORE + "us-core-condition-encounter-diagnosis": conditions.ENCOUNTER_DIAGNOSIS,
    US_CORE + "us-core-allergyintolerance": conditions.ALLERGY,
    US_CORE + "us-core-medicationrequest": medications.MEDICATION_REQUEST,
    US_CORE + "us-core-immunization": medications.IMMUNIZATION,
    US_CORE + "us-core-procedure": care.PROCEDURE,
    US_CORE + "us-core-careplan": care.CAREPLAN,
    US_CORE + "us-core-goal": care.GOAL,
    US_CORE + "us-core-servicerequest": care.SERVICE_REQUEST,
    US_CORE + "us-core-provenance": [],
}

#: Every profile the product knows, and the family it is a profile of.
PROFILE_FAMILY: dict[str, Family] = {
    **{url: family for family, url in DEFAULT_PROFILE.items() if url is not None},
    **dict.fromkeys(VITAL_SIGN_PROFILES, Family.VITAL_SIGN),
}


def check_problems(checks: Sequence[Check], resource: dict[str, Any]) -> list[Problem]:
    """The problems ``checks`` find in ``resource``, in their order, each once."""
    found: list[Problem] = []
    constraints: list[Constraint] = []
    for check in [*checks, None]:
        if isinstance(check, Constraint):
            constraints.append(check)
            continue
        found += constraint_problems(constraints, resource)
        constraints = []
        if check is not None:
            found += check(resource)
    return list(dict.fromkeys(found))
