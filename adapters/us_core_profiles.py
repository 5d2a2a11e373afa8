"""What each clinical family is checked against before it is written: the R4 required bindings
of its resource type, then its US Core 6.1 profile (hl7.org/fhir/us/core/STU6.1), as rules
(adapters/profile_rules.py).

Which profile: the first one the resource's ``meta.profile`` names that the product knows for its
resource type (a canonical's ``|version`` is ignored), else its family's default
(adapters/families.py ``DEFAULT_PROFILE``). A profile the product does not know is not a reason to
refuse: the default still applies. A known profile of *another* resource type is refused.

The vital signs and the clinical notes keep their own, older checks (adapters/vital_signs.py,
adapters/clinical_notes.py): they are stricter than the profile (a LOINC code and UCUM unit US
Core names for the vital sign, a ``clinical-note`` category).

Each profile's rules are its *mandatory* elements beyond the base resource (its must-support
elements are a server's obligation, not a sender's), its fixed slices and codes, the reference
targets it narrows to the patient, and the invariants a sender can break.
"""

from __future__ import annotations

from typing import Any

from adapters.clinical_notes import check_clinical_note
from adapters.families import (
    CONDITION_CATEGORY,
    DEFAULT_PROFILE,
    OBSERVATION_CATEGORY,
    US_CORE,
    US_CORE_CONDITION_CATEGORY,
    Family,
)
from adapters.problems import Problem
from adapters.profile_rules import (
    MISSING,
    Rule,
    code_in,
    codings,
    concept_in,
    has_coding,
    one_of,
    references,
    required,
    when,
)
from adapters.vital_signs import LOINC, check_vital_sign

CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
CAREPLAN_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/careplan-category"
_CONDITION_CATEGORIES = (CONDITION_CATEGORY, US_CORE_CONDITION_CATEGORY)

#: The vital-sign profiles whose LOINC code the product knows (adapters/vital_signs.py), each
#: with the code it fixes; all are checked as US Core Vital Signs plus that code.
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

# --- R4 required bindings (hl7.org/fhir/R4, each resource's status value sets) ---------------


def _codes(listed: str) -> frozenset[str]:
    return frozenset(listed.split())


_REQUEST_INTENT = (
    "proposal plan order original-order reflex-order filler-order instance-order option"
)
_EVENT_STATUS = _codes(
    "preparation in-progress not-done on-hold stopped completed entered-in-error unknown"
)
_REQUEST_STATUS = _codes("draft active on-hold revoked completed entered-in-error unknown")

#: Per resource type, the required bindings of the base resource that pydantic does not check.
BASE_BINDINGS: dict[str, tuple[Rule, ...]] = {
    "Observation": (
        code_in(
            "status",
            _codes(
                "registered preliminary final amended corrected cancelled entered-in-error unknown"
            ),
        ),
    ),
    "DiagnosticReport": (
        code_in(
            "status",
            _codes(
                "registered partial preliminary final amended corrected appended cancelled"
                " entered-in-error unknown"
            ),
        ),
    ),
    "DocumentReference": (code_in("status", _codes("current superseded entered-in-error")),),
    "Condition": (
        concept_in(
            "clinicalStatus",
            CONDITION_CLINICAL,
            _codes("active recurrence relapse inactive remission resolved"),
        ),
        concept_in(
            "verificationStatus",
            CONDITION_VERIFICATION,
            _codes("unconfirmed provisional differential confirmed refuted entered-in-error"),
        ),
    ),
    "AllergyIntolerance": (
        concept_in("clinicalStatus", ALLERGY_CLINICAL, _codes("active inactive resolved")),
        concept_in(
            "verificationStatus",
            ALLERGY_VERIFICATION,
            _codes("unconfirmed confirmed refuted entered-in-error"),
        ),
        code_in("type", _codes("allergy intolerance")),
        code_in("criticality", _codes("low high unable-to-assess")),
    ),
    "MedicationRequest": (
        code_in(
            "status",
            _codes("active on-hold cancelled completed entered-in-error stopped draft unknown"),
        ),
        code_in("intent", _codes(_REQUEST_INTENT)),
    ),
    "MedicationStatement": (
        code_in(
            "status",
            _codes("active completed entered-in-error intended stopped on-hold unknown not-taken"),
        ),
    ),
    "Immunization": (code_in("status", _codes("completed entered-in-error not-done")),),
    "Procedure": (code_in("status", _EVENT_STATUS),),
    "CarePlan": (
        code_in("status", _REQUEST_STATUS),
        code_in("intent", _codes("proposal plan order option")),
    ),
    "Goal": (
        code_in(
            "lifecycleStatus",
            _codes(
                "proposed planned accepted active on-hold completed cancelled entered-in-error"
                " rejected"
            ),
        ),
    ),
    "ServiceRequest": (
        code_in("status", _REQUEST_STATUS),
        code_in("intent", _codes("directive " + _REQUEST_INTENT)),
    ),
    "Task": (
        code_in(
            "status",
            _codes(
                "draft requested received accepted rejected ready cancelled in-progress on-hold"
                " failed completed entered-in-error"
            ),
        ),
        code_in("intent", _codes("unknown " + _REQUEST_INTENT)),
    ),
    "Communication": (code_in("status", _EVENT_STATUS),),
    "Provenance": (),
}

# --- invariants a sender can break -------------------------------------------------------------


def _coded(resource: dict[str, Any], path: str, code: str) -> bool:
    return any(c.get("code") == code for c in codings(resource.get(path)))


def _withdrawn(resource: dict[str, Any]) -> bool:
    return _coded(resource, "verificationStatus", "entered-in-error")


def _clinical_status_invariants(never_when_withdrawn: str, needed: bool) -> Rule:
    """R4's clinical status invariants: none on a record entered in error (ait-2, con-5); and,
    where ``needed`` (ait-1), one on every other record. (Condition's con-3, the same for a
    problem-list item, is a warning in R4: not enforced.)"""

    def rule(resource: dict[str, Any]) -> list[Problem]:
        present = "clinicalStatus" in resource
        if _withdrawn(resource) and present:
            return [Problem("clinicalStatus", f"invariant_failed ({never_when_withdrawn})")]
        if needed and not _withdrawn(resource) and not present:
            return [Problem("clinicalStatus", MISSING)]
        return []

    return rule


def _result_or_absent_reason(resource: dict[str, Any]) -> list[Problem]:
    """US Core us-core-2 and R4 obs-6: a value or a reason it is absent (unless the result is
    a panel of components or members), never both."""
    valued = any(key.startswith("value") for key in resource)
    if valued and "dataAbsentReason" in resource:
        return [Problem("dataAbsentReason", "invariant_failed (obs-6)")]
    if valued or "dataAbsentReason" in resource or "component" in resource:
        return []
    return [] if "hasMember" in resource else [Problem("value[x]", MISSING)]


def _problem_or_concern(resource: dict[str, Any]) -> list[Problem]:
    """The profile's category slice: problem-list-item (R4 condition-category) or health-concern
    (either that system or US Core's own)."""
    for concept in resource.get("category") or []:
        for coding in codings(concept):
            if coding.get("system") in _CONDITION_CATEGORIES and coding.get("code") in (
                "problem-list-item",
                "health-concern",
            ):
                return []
    return [Problem("category", f"coding_missing ({CONDITION_CATEGORY}#problem-list-item)")]


def _performed(resource: dict[str, Any]) -> bool:
    return resource.get("status") in ("completed", "in-progress")


def _patient(path: str) -> tuple[Rule, Rule]:
    return required(path), references(path, "Patient")


def _vital_sign_code(code: str) -> Rule:
    return has_coding("code", LOINC, code)


# --- the profiles ------------------------------------------------------------------------------

_CONDITION = (
    required("code"),
    *_patient("subject"),
    _clinical_status_invariants("con-5", needed=False),
)

#: Profile URL -> its rules on top of the base resource's.
PROFILE_RULES: dict[str, tuple[Rule, ...]] = {
    US_CORE + "us-core-vital-signs": (check_vital_sign,),
    **{
        url: (check_vital_sign, _vital_sign_code(code)) for url, code in VITAL_SIGN_PROFILES.items()
    },
    US_CORE + "us-core-observation-lab": (
        has_coding("category", OBSERVATION_CATEGORY, "laboratory"),
        *_patient("subject"),
        _result_or_absent_reason,
    ),
    US_CORE + "us-core-diagnosticreport-lab": (
        has_coding("category", DIAGNOSTIC_SERVICE, "LAB"),
        *_patient("subject"),
    ),
    US_CORE + "us-core-documentreference": (check_clinical_note,),
    US_CORE + "us-core-condition-problems-health-concerns": (_problem_or_concern, *_CONDITION),
    US_CORE + "us-core-condition-encounter-diagnosis": (
        has_coding("category", CONDITION_CATEGORY, "encounter-diagnosis"),
        *_CONDITION,
    ),
    US_CORE + "us-core-allergyintolerance": (
        required("code"),
        *_patient("patient"),
        _clinical_status_invariants("ait-2", needed=True),
    ),
    US_CORE + "us-core-medicationrequest": (*_patient("subject"),),
    US_CORE + "us-core-immunization": (*_patient("patient"),),
    US_CORE + "us-core-procedure": (
        *_patient("subject"),
        required("code"),
        when(_performed, one_of("performed", "DateTime", "Period")),
    ),
    US_CORE + "us-core-careplan": (
        has_coding("category", CAREPLAN_CATEGORY, "assess-plan"),
        *_patient("subject"),
    ),
    US_CORE + "us-core-goal": (*_patient("subject"),),
    US_CORE + "us-core-servicerequest": (
        required("code"),
        *_patient("subject"),
    ),
    US_CORE + "us-core-provenance": (),
}

#: Every profile the product knows, and the family it is a profile of.
PROFILE_FAMILY: dict[str, Family] = {
    **{url: family for family, url in DEFAULT_PROFILE.items() if url is not None},
    **dict.fromkeys(VITAL_SIGN_PROFILES, Family.VITAL_SIGN),
}
