"""Medications and immunizations: US Core MedicationRequest and US Core Immunization
(hl7.org/fhir/us/core/STU6.1), and MedicationStatement (base R4: US Core 6.1 has no profile for
it), as constraints.

Besides the mandatory elements (a patient; base R4 already requires the medication, the vaccine,
the statuses and the intent): the R4 required bindings of status and intent, and the code systems
the bindings name: RxNorm for a medication given as a code (a ``medicationReference`` is not
looked into), CVX for a vaccine.
"""

from __future__ import annotations

from adapters.code_systems import CVX, RXNORM
from adapters.fhirpath_constraints import code_in, coded_in_systems, patient

REQUEST_INTENT = [
    "proposal",
    "plan",
    "order",
    "original-order",
    "reflex-order",
    "filler-order",
    "instance-order",
    "option",
]

MEDICATION_REQUEST_BASE = [
    code_in(
        "status",
        [
            "active",
            "on-hold",
            "cancelled",
            "completed",
            "entered-in-error",
            "stopped",
            "draft",
            "unknown",
        ],
    ),
    code_in("intent", REQUEST_INTENT),
]

MEDICATION_REQUEST = [
    *patient("subject"),
    coded_in_systems("medicationCodeableConcept", RXNORM),
]

#: MedicationStatement has no US Core 6.1 profile: its base bindings and the product's own rules
#: (a medication code in RxNorm, the statement about a patient) apply to every one.
MEDICATION_STATEMENT_BASE = [
    code_in(
        "status",
        [
            "active",
            "completed",
            "entered-in-error",
            "intended",
            "stopped",
            "on-hold",
            "unknown",
            "not-taken",
        ],
    ),
    *patient("subject"),
    coded_in_systems("medicationCodeableConcept", RXNORM),
]

IMMUNIZATION_BASE = [code_in("status", ["completed", "entered-in-error", "not-done"])]

IMMUNIZATION = [
    *patient("patient"),
    coded_in_systems("vaccineCode", CVX),
]
