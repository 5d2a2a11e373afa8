"""Epic on FHIR: what Epic refuses that plain R4 allows, checked before anything is sent.

Sources (docs/vendors.md quirks 1-8): fhir.epic.com, "DocumentReference.Create (Clinical Notes)
(R4)" (the note is filed to an encounter: ``context.encounter`` is required; only the first
attachment is used and it must be base64 ``text/plain`` or ``text/html``), "Observation.Create
(Vitals) (R4)" (vital signs only as ``final``; a reading already filed answers 400 with Epic code
59189, handled by the write step), "Condition.Create (Problems) (R4)" (``verificationStatus`` must
be ``provisional``, else 422 / 59012). Epic has no update: a write cannot be compensated. Problems
and allergies go to a holding tank for clinician review (readable by id, absent from search until
reviewed: docs/write-safety.md).
"""

from __future__ import annotations

from typing import Any

from adapters.clinical_notes import first_attachment, media_type
from adapters.code_systems import CONDITION_VERIFICATION
from adapters.families import Family, category_codes
from adapters.problems import Problem
from adapters.vendor import FhirVendor, Vendor

#: Epic OperationOutcome code for "Reading already exists" (a replayed vital sign).
READING_ALREADY_EXISTS = "59189"
NOTE_CONTENT_TYPES = frozenset({"text/plain", "text/html"})
#: Types Epic files into its holding tank for review: a new one can stay out of search for days.
HOLDING_TANK_TYPES = frozenset({"Condition", "AllergyIntolerance"})
#: The families Epic documents a create API for (docs/vendors.md quirk 16): "Observation.Create
#: (Vitals)", "DocumentReference.Create (Clinical Notes)", "Condition.Create (Problems)",
#: "AllergyIntolerance.Create" (R4). Laboratory results, encounter diagnoses, medications,
#: immunizations, procedures, goals and care plans have no create API for a backend writer.
FAMILIES = frozenset({Family.VITAL_SIGN, Family.CLINICAL_NOTE, Family.PROBLEM, Family.ALLERGY})


def _note_problems(resource: dict[str, Any]) -> list[Problem]:
    problems = []
    context = resource.get("context")
    if not (isinstance(context, dict) and context.get("encounter")):
        problems.append(Problem("context.encounter", "Epic files a note to an encounter: required"))
    if len(resource.get("content") or []) > 1:
        problems.append(Problem("content", "Epic keeps only the first attachment: send one"))
    if media_type(first_attachment(resource).get("contentType")) not in NOTE_CONTENT_TYPES:
        problems.append(
            Problem("content[0].attachment.contentType", "Epic takes text/plain or text/html")
        )
    return problems


def _condition_problems(resource: dict[str, Any]) -> list[Problem]:
    categories = category_codes(resource)
    if categories and "problem-list-item" not in categories:
        return [Problem("category", "Epic's Condition create files problem-list items")]
    status = resource.get("verificationStatus") or {}
    codes = [
        (c.get("system"), c.get("code")) for c in status.get("coding", []) if isinstance(c, dict)
    ]
    if (CONDITION_VERIFICATION, "provisional") not in codes:
        return [Problem("verificationStatus", "Epic files problems as 'provisional' only")]
    return []


def create_problems(resource: dict[str, Any]) -> list[Problem]:
    """Why Epic would refuse this create (empty when it would take it)."""
    if resource.get("resourceType") == "DocumentReference":
        return _note_problems(resource)
    if resource.get("resourceType") == "Condition":
        return _condition_problems(resource)
    return []


def reading_already_exists(outcome: Any) -> bool:
    """Is this error answer Epic's 59189 "Reading already exists"?"""
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return False
    return any(
        coding.get("code") == READING_ALREADY_EXISTS
        for issue in outcome.get("issue", [])
        if isinstance(issue, dict)
        for coding in (issue.get("details") or {}).get("coding", [])
        if isinstance(coding, dict)
    )


def same_reading_slot(ours: dict[str, Any], stored: dict[str, Any]) -> bool:
    """Is ``stored`` a reading of the same patient, code and time as ``ours`` (the flowsheet cell
    Epic's 59189 is about), whatever its value?"""

    def slot(resource: dict[str, Any]) -> tuple[Any, ...]:
        codes = sorted(
            (c.get("system"), c.get("code"))
            for c in (resource.get("code") or {}).get("coding", [])
            if isinstance(c, dict)
        )
        when = sorted((k, v) for k, v in resource.items() if k.startswith("effective"))
        return (resource.get("subject") or {}).get("reference"), codes, when

    return slot(ours) == slot(stored)


class Epic(FhirVendor):
    """Epic on FHIR: create-only, its create rules, its holding tank and its 59189."""

    families = FAMILIES
    updates = False
    holding_tank_types = HOLDING_TANK_TYPES

    def create_problems(self, resource: dict[str, Any]) -> list[Problem]:
        return create_problems(resource)

    def refused_as_on_file(self, outcome: Any) -> bool:
        return reading_already_exists(outcome)

    def same_reading_slot(self, ours: dict[str, Any], stored: dict[str, Any]) -> bool:
        return same_reading_slot(ours, stored)


ADAPTER = Epic(Vendor.EPIC)
