"""Writes through a vendor's proprietary API (athenaOne, Veradigm Unity) instead of FHIR.

The map step turns the canonical FHIR resource into a :class:`VendorCall` (pure: no I/O) and
into the FHIR *projection* the vendor's FHIR API will show for it afterwards; the write activity
sends the call and turns the vendor's answer into a FHIR reference with :func:`resource_id`;
verification reads that reference over FHIR and compares it with the projection.

These APIs take no idempotency key and keep no identifier of ours, so deduplication is by content
fingerprint of the projection (search-before-create over FHIR), never by command identifier.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from adapters.clinical_notes import (
    CLINICAL_NOTE,
    NOTE_CATEGORY_SYSTEM,
    codes_in,
    note_text,
)
from adapters.code_systems import CONDITION_CLINICAL, LOINC, SNOMED, UCUM
from adapters.problems import Problem, ResourceInvalid

VITAL_SIGNS_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
        }
    ]
}
BLOOD_PRESSURE_PANEL = "85354-9"
PROBLEM_LIST_ITEM = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
            "code": "problem-list-item",
        }
    ]
}


class AnswerKind(StrEnum):
    """Which answer athenaOne's and Unity's calls get, so their adapters know how to read it
    (a call's ``answer`` is open: another vendor's adapter names its own)."""

    ATHENA_VITALS = "athena_vitals"
    ATHENA_DOCUMENT = "athena_document"
    ATHENA_PROBLEM = "athena_problem"
    UNITY = "unity"


class VendorCall(BaseModel):
    """One proprietary request, ready to send (the Unity token is added when sending)."""

    answer: str = Field(description="which answer the call gets: how its adapter reads it")
    path: str = Field(description="relative to the tenant's vendor_api.base_url")
    form: dict[str, str] | None = Field(default=None, description="athenaOne: form fields")
    message: dict[str, Any] | None = Field(default=None, description="Unity MagicJson envelope")
    id_prefix: str = Field(description="FHIR id of the stored resource = id_prefix + vendor id")

    @property
    def action(self) -> str:
        return str((self.message or {}).get("Action", self.answer))


class VendorRefused(Exception):
    """The vendor answered, but not with a stored record; ``token_expired`` asks for a new token."""

    def __init__(self, reason: str, *, token_expired: bool = False) -> None:
        super().__init__(reason)
        self.token_expired = token_expired


def loinc_codes(concept: Any) -> list[str]:
    return codes_in(concept, LOINC)


def patient_id(resource: dict[str, Any]) -> str:
    reference = str((resource.get("subject") or {}).get("reference", ""))
    return reference.split("/", 1)[1] if reference.startswith("Patient/") else ""


def utc_time(resource: dict[str, Any]) -> datetime:
    """The reading's time in UTC; these APIs take a wall-clock time without a zone."""
    value = resource.get("effectiveDateTime")
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ResourceInvalid(
            [Problem("effectiveDateTime", "this EHR's vitals API needs a time with a time zone")]
        )
    return when.astimezone(UTC)


def number(value: Any) -> int | float:
    value = float(value)
    return int(value) if value.is_integer() else value


def quantity(value: Any, unit: str) -> dict[str, Any]:
    return {"value": number(value), "unit": unit, "system": UCUM, "code": unit}


def readings(resource: dict[str, Any]) -> list[tuple[str, int | float, str]]:
    """(LOINC, value, UCUM unit) of a vital sign: one, or systolic + diastolic of the BP panel."""
    if BLOOD_PRESSURE_PANEL in loinc_codes(resource.get("code")):
        parts = [
            (loinc_codes(c.get("code")), c.get("valueQuantity") or {})
            for c in resource.get("component", [])
        ]
        return [
            (codes[0], number(q.get("value")), str(q.get("code")))
            for codes, q in parts
            if codes and codes[0] in {"8480-6", "8462-4"}
        ]
    q = resource.get("valueQuantity") or {}
    return [(loinc_codes(resource.get("code"))[0], number(q.get("value")), str(q.get("code")))]


def vital_projection(
    resource: dict[str, Any],
    when: datetime,
    values: list[tuple[str, int | float, str]] | None = None,
) -> dict[str, Any]:
    """The FHIR Observation the vendor's FHIR API shows for a vital sign written through it
    (``values``: the readings as the vendor records them, when the adapter converted units)."""
    projection: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [VITAL_SIGNS_CATEGORY],
        "subject": {"reference": f"Patient/{patient_id(resource)}"},
        "effectiveDateTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    values = readings(resource) if values is None else values
    if BLOOD_PRESSURE_PANEL in loinc_codes(resource.get("code")):
        projection["code"] = {"coding": [{"system": LOINC, "code": BLOOD_PRESSURE_PANEL}]}
        projection["component"] = [
            {"code": {"coding": [{"system": LOINC, "code": code}]}, "valueQuantity": quantity(v, u)}
            for code, v, u in sorted(values, key=lambda r: r[0] != "8480-6")
        ]
    else:
        code, value, unit = values[0]
        projection["code"] = {"coding": [{"system": LOINC, "code": code}]}
        projection["valueQuantity"] = quantity(value, unit)
    return projection


def note_projection(resource: dict[str, Any], loinc: str, encounter: str | None) -> dict[str, Any]:
    """The FHIR DocumentReference the vendor's FHIR API shows for a note written through it: the
    text survives, our content type and identifiers do not (compared as normalized text)."""
    text = note_text(resource) or ""
    projection: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": loinc}]},
        "category": [{"coding": [{"system": NOTE_CATEGORY_SYSTEM, "code": CLINICAL_NOTE}]}],
        "subject": {"reference": f"Patient/{patient_id(resource)}"},
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain; charset=utf-8",
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
    }
    if encounter:
        projection["context"] = {"encounter": [{"reference": f"Encounter/{encounter}"}]}
    return projection


def problem_projection(resource: dict[str, Any], snomed: str, onset: str | None) -> dict[str, Any]:
    """The FHIR Condition the vendor's FHIR API shows for a problem added to the chart: an active
    problem-list item with its SNOMED CT code and, when given, its onset date (a date: the chart
    keeps no time of onset)."""
    projection: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
        "category": [PROBLEM_LIST_ITEM],
        "code": {"coding": [{"system": SNOMED, "code": snomed}]},
        "subject": {"reference": f"Patient/{patient_id(resource)}"},
    }
    if onset:
        projection["onsetDateTime"] = onset
    return projection


def encounter_id(resource: dict[str, Any]) -> str | None:
    context = resource.get("context")
    encounters = context.get("encounter") if isinstance(context, dict) else None
    if not isinstance(encounters, list) or not encounters:
        return None
    reference = str((encounters[0] or {}).get("reference", ""))
    return reference.split("/", 1)[1] if reference.startswith("Encounter/") else None
