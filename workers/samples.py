"""Synthetic vital-sign Observations for the demo and examples. No real patient data, ever."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from workflows.saga_contract import SagaStep

VITAL_SIGNS_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs",
            "display": "Vital Signs",
        }
    ]
}


def _loinc(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


def heart_rate(patient: str, bpm: int, when: datetime | None = None) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [VITAL_SIGNS_CATEGORY],
        "code": _loinc("8867-4", "Heart rate"),
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": (when or datetime.now(UTC)).isoformat(timespec="seconds"),
        "valueQuantity": _quantity(bpm, "/min"),
    }


def blood_pressure(
    patient: str, systolic: int, diastolic: int, when: datetime | None = None
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [VITAL_SIGNS_CATEGORY],
        "code": _loinc("85354-9", "Blood pressure panel with all children optional"),
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": (when or datetime.now(UTC)).isoformat(timespec="seconds"),
        "component": [
            {"code": _loinc("8480-6", "Systolic"), "valueQuantity": _quantity(systolic, "mm[Hg]")},
            {
                "code": _loinc("8462-4", "Diastolic"),
                "valueQuantity": _quantity(diastolic, "mm[Hg]"),
            },
        ],
    }


def body_temperature(patient: str, celsius: float, when: datetime | None = None) -> dict[str, Any]:
    resource = heart_rate(patient, 0, when)
    resource["code"] = _loinc("8310-5", "Body temperature")
    resource["valueQuantity"] = _quantity(celsius, "Cel")
    return resource


def clinical_note(
    patient: str,
    text: str,
    encounter: str | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> dict[str, Any]:
    """A US Core clinical note (progress note); ``text`` is sent base64-encoded as is."""
    note: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": _loinc("11506-3", "Progress note"),
        "category": [
            {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                        "code": "clinical-note",
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/{patient}"},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "content": [
            {
                "attachment": {
                    "contentType": content_type,
                    "data": base64.b64encode(text.encode()).decode(),
                }
            }
        ],
    }
    if encounter:
        note["context"] = {"encounter": [{"reference": f"Encounter/{encounter}"}]}
    return note


def referral(patient: str, receiving_org: str = "org-cardiology") -> list[SagaStep]:
    """ServiceRequest → Task (focus = the request) → Communication to the receiving organization."""
    return [
        SagaStep(
            name="request",
            resource={
                "resourceType": "ServiceRequest",
                "status": "active",
                "intent": "order",
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "306206005"}]},
                "subject": {"reference": f"Patient/{patient}"},
                "performer": [{"reference": f"Organization/{receiving_org}"}],
            },
        ),
        SagaStep(
            name="task",
            resource={
                "resourceType": "Task",
                "status": "requested",
                "intent": "order",
                "focus": {"reference": "saga:request"},
                "for": {"reference": f"Patient/{patient}"},
                "owner": {"reference": f"Organization/{receiving_org}"},
            },
        ),
        SagaStep(
            name="notify",
            resource={
                "resourceType": "Communication",
                "status": "completed",
                "subject": {"reference": f"Patient/{patient}"},
                "about": [{"reference": "saga:request"}, {"reference": "saga:task"}],
                "recipient": [{"reference": f"Organization/{receiving_org}"}],
                "payload": [{"contentString": "New referral: see the linked task."}],
            },
        ),
    ]


def note_with_provenance(patient: str, text: str, encounter: str | None = None) -> list[SagaStep]:
    """A clinical note, then its Provenance: the saga fills in the agent (the command's
    on-behalf-of user), the entity (the note's command) and the policy that allowed the write.
    Optional: skipped on a tenant that accepts no Provenance."""
    return [
        SagaStep(name="note", resource=clinical_note(patient, text, encounter)),
        SagaStep(
            name="provenance",
            resource={
                "resourceType": "Provenance",
                "target": [{"reference": "saga:note"}],
                "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            optional=True,
        ),
    ]


def vitals_panel(patient: str, when: datetime | None = None) -> list[SagaStep]:
    """Several vital signs taken together, written as one unit."""
    taken = when or datetime.now(UTC)
    return [
        SagaStep(name="heart-rate", resource=heart_rate(patient, 72, taken)),
        SagaStep(name="blood-pressure", resource=blood_pressure(patient, 120, 80, taken)),
        SagaStep(name="temperature", resource=body_temperature(patient, 36.8, taken)),
    ]
