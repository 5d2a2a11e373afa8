"""One synthetic sample of every clinical family (adapters/families.py), valid against its US Core
profile, for the demo, the examples and the tests. No real patient data, ever: codes are public
terminology (LOINC, SNOMED CT, RxNorm, CVX), values are made up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from adapters.code_systems import (
    ALLERGY_CLINICAL,
    ALLERGY_VERIFICATION,
    CAREPLAN_CATEGORY,
    CONDITION_CATEGORY,
    CONDITION_CLINICAL,
    CONDITION_VERIFICATION,
    CVX,
    DIAGNOSTIC_SERVICE,
    INTERPRETATION,
    LOINC,
    OBSERVATION_CATEGORY,
    RXNORM,
    SNOMED,
    UCUM,
)
from adapters.families import Family
from workers import samples
from workflows.saga_contract import SagaStep

MEDREQUEST_CATEGORY = "http://terminology.hl7.org/CodeSystem/medicationrequest-category"


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _when(when: datetime | None, earlier: timedelta = timedelta(0)) -> str:
    return ((when or datetime.now(UTC)) - earlier).isoformat(timespec="seconds")


def _patient(patient: str) -> dict[str, str]:
    return {"reference": f"Patient/{patient}"}


def lab_result(
    patient: str,
    loinc: str = "2345-7",
    display: str = "Glucose [Mass/volume] in Serum or Plasma",
    value: float = 95,
    unit: str = "mg/dL",
    normal: tuple[float, float] = (70, 99),
    when: datetime | None = None,
) -> dict[str, Any]:
    """A final laboratory result (US Core Laboratory Result Observation)."""
    low, high = normal
    flag = ("L", "Low") if value < low else ("H", "High") if value > high else ("N", "Normal")
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [_concept(OBSERVATION_CATEGORY, "laboratory", "Laboratory")],
        "code": _concept(LOINC, loinc, display),
        "subject": _patient(patient),
        "effectiveDateTime": _when(when, timedelta(hours=2)),
        "issued": _when(when),
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
        "interpretation": [_concept(INTERPRETATION, *flag)],
        "referenceRange": [
            {
                "low": {"value": low, "unit": unit, "system": UCUM, "code": unit},
                "high": {"value": high, "unit": unit, "system": UCUM, "code": unit},
            }
        ],
    }


#: The basic metabolic panel's results the lab panel sample carries (LOINC, display, value, UCUM
#: unit, normal range).
PANEL_RESULTS = (
    ("glucose", "2345-7", "Glucose [Mass/volume] in Serum or Plasma", 95, "mg/dL", (70, 99)),
    ("sodium", "2951-2", "Sodium [Moles/volume] in Serum or Plasma", 139, "mmol/L", (135, 145)),
    (
        "potassium",
        "2823-3",
        "Potassium [Moles/volume] in Serum or Plasma",
        4.2,
        "mmol/L",
        (3.5, 5.1),
    ),
)


def lab_report(patient: str, results: list[str], when: datetime | None = None) -> dict[str, Any]:
    """A final laboratory DiagnosticReport (US Core DiagnosticReport for Laboratory Results
    Reporting) whose ``result`` references ``results`` (references, or ``saga:<step>``)."""
    return {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "category": [_concept(DIAGNOSTIC_SERVICE, "LAB", "Laboratory")],
        "code": _concept(LOINC, "51990-0", "Basic metabolic panel - Blood"),
        "subject": _patient(patient),
        "effectiveDateTime": _when(when, timedelta(hours=2)),
        "issued": _when(when),
        "result": [{"reference": reference} for reference in results],
    }


def lab_panel(patient: str, when: datetime | None = None) -> list[SagaStep]:
    """A lab panel as one saga: three results, then the report that lists them (written last:
    a report must never point at results that were withdrawn)."""
    steps = [
        SagaStep(name=name, resource=lab_result(patient, code, display, value, unit, normal, when))
        for name, code, display, value, unit, normal in PANEL_RESULTS
    ]
    report = lab_report(patient, [f"saga:{step.name}" for step in steps], when)
    return [*steps, SagaStep(name="report", resource=report)]


def problem(patient: str, when: datetime | None = None) -> dict[str, Any]:
    """An active problem-list entry (US Core Condition Problems and Health Concerns)."""
    return {
        "resourceType": "Condition",
        "clinicalStatus": _concept(CONDITION_CLINICAL, "active", "Active"),
        "verificationStatus": _concept(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
        "category": [_concept(CONDITION_CATEGORY, "problem-list-item", "Problem List Item")],
        "code": _concept(SNOMED, "38341003", "Hypertensive disorder"),
        "subject": _patient(patient),
        "onsetDateTime": _when(when, timedelta(days=400)),
        "recordedDate": _when(when),
    }


def encounter_diagnosis(
    patient: str, encounter: str = "enc-demo-1", when: datetime | None = None
) -> dict[str, Any]:
    """A diagnosis made in an encounter (US Core Condition Encounter Diagnosis)."""
    return {
        "resourceType": "Condition",
        "clinicalStatus": _concept(CONDITION_CLINICAL, "active", "Active"),
        "verificationStatus": _concept(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
        "category": [_concept(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")],
        "code": _concept(SNOMED, "444814009", "Viral sinusitis"),
        "subject": _patient(patient),
        "encounter": {"reference": f"Encounter/{encounter}"},
        "recordedDate": _when(when),
    }


def allergy(patient: str, when: datetime | None = None) -> dict[str, Any]:
    """A confirmed drug allergy (US Core AllergyIntolerance)."""
    return {
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": _concept(ALLERGY_CLINICAL, "active", "Active"),
        "verificationStatus": _concept(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
        "type": "allergy",
        "category": ["medication"],
        "criticality": "high",
        "code": _concept(RXNORM, "7980", "Penicillin G"),
        "patient": _patient(patient),
        "recordedDate": _when(when),
        "reaction": [{"manifestation": [_concept(SNOMED, "247472004", "Hives")]}],
    }


def medication_request(patient: str, when: datetime | None = None) -> dict[str, Any]:
    """An outpatient prescription (US Core MedicationRequest)."""
    return {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "category": [_concept(MEDREQUEST_CATEGORY, "community", "Community")],
        "medicationCodeableConcept": _concept(RXNORM, "197361", "Amlodipine 5 MG Oral Tablet"),
        "subject": _patient(patient),
        "authoredOn": _when(when),
        "requester": {"reference": "Practitioner/pr-demo-1"},
        "dosageInstruction": [{"text": "one tablet by mouth once a day"}],
    }


def medication_statement(patient: str, when: datetime | None = None) -> dict[str, Any]:
    """A medication the patient reports taking (base R4 MedicationStatement)."""
    return {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": _concept(RXNORM, "310965", "Ibuprofen 200 MG Oral Tablet"),
        "subject": _patient(patient),
        "effectiveDateTime": _when(when, timedelta(days=30)),
        "dateAsserted": _when(when),
    }


def immunization(patient: str, when: datetime | None = None) -> dict[str, Any]:
    """A vaccine given (US Core Immunization)."""
    return {
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": _concept(CVX, "140", "Influenza, seasonal, injectable, preservative free"),
        "patient": _patient(patient),
        "occurrenceDateTime": _when(when, timedelta(hours=1)),
        "primarySource": True,
    }


def procedure(patient: str, when: datetime | None = None) -> dict[str, Any]:
    """A completed procedure (US Core Procedure)."""
    return {
        "resourceType": "Procedure",
        "status": "completed",
        "code": _concept(SNOMED, "73761001", "Colonoscopy"),
        "subject": _patient(patient),
        "performedDateTime": _when(when, timedelta(days=2)),
    }


def goal(patient: str, when: datetime | None = None) -> dict[str, Any]:
    """A patient goal (US Core Goal)."""
    due = ((when or datetime.now(UTC)) + timedelta(days=90)).date().isoformat()
    return {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": "Blood pressure below 130/80 mmHg"},
        "subject": _patient(patient),
        "startDate": (when or datetime.now(UTC)).date().isoformat(),
        "target": [{"dueDate": due}],
    }


def care_plan(patient: str, goals: list[str]) -> dict[str, Any]:
    """An active assessment-and-plan CarePlan (US Core CarePlan) pursuing ``goals`` (references,
    or ``saga:<step>``)."""
    return {
        "resourceType": "CarePlan",
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">Hypertension care plan</div>',
        },
        "status": "active",
        "intent": "plan",
        "category": [_concept(CAREPLAN_CATEGORY, "assess-plan", "Assessment and Plan")],
        "subject": _patient(patient),
        "goal": [{"reference": reference} for reference in goals],
    }


def care_plan_saga(patient: str, when: datetime | None = None) -> list[SagaStep]:
    """A care plan as one saga: its goal, then the plan that points at it."""
    return [
        SagaStep(name="goal", resource=goal(patient, when)),
        SagaStep(name="plan", resource=care_plan(patient, ["saga:goal"])),
    ]


#: One sample per family written alone (the saga-only families are written with their saga:
#: ``lab_panel``, ``care_plan_saga``, ``samples.referral``, ``samples.note_with_provenance``).
SINGLE_WRITES: dict[Family, Callable[[str], dict[str, Any]]] = {
    Family.VITAL_SIGN: lambda patient: samples.heart_rate(patient, 72),
    Family.LABORATORY_RESULT: lab_result,
    Family.CLINICAL_NOTE: lambda patient: samples.clinical_note(
        patient, "Synthetic progress note.", encounter="enc-demo-1"
    ),
    Family.PROBLEM: problem,
    Family.ENCOUNTER_DIAGNOSIS: encounter_diagnosis,
    Family.ALLERGY: allergy,
    Family.MEDICATION_REQUEST: medication_request,
    Family.MEDICATION_STATEMENT: medication_statement,
    Family.IMMUNIZATION: immunization,
    Family.PROCEDURE: procedure,
    Family.GOAL: goal,
}
