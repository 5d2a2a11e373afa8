"""Procedures, care plans, goals, referrals and the saga types: US Core Procedure, CarePlan, Goal,
ServiceRequest and Provenance (hl7.org/fhir/us/core/STU6.1), and Task and Communication (base R4:
US Core 6.1 has no profile for them), as constraints.

Besides each profile's mandatory elements (the patient; a procedure's and a referral's code; a
care plan's ``assess-plan`` category): the R4 required bindings of status and intent, US Core's
us-core-7 (a completed or in-progress procedure says when it was performed), a procedure code in
SNOMED CT, CPT, ICD-10-PCS or HCPCS, and whom a Provenance agent may reference (US Core
Provenance otherwise adds must-supports only).
"""

from __future__ import annotations

from adapters.code_systems import CAREPLAN_CATEGORY, SNOMED
from adapters.fhirpath_constraints import (
    Constraint,
    code_in,
    coded_in_systems,
    has_coding,
    patient,
    references,
    required,
)
from adapters.us_core_medications import REQUEST_INTENT

CPT = "http://www.ama-assn.org/go/cpt"
ICD10PCS = "http://www.cms.gov/Medicare/Coding/ICD10"
HCPCS = "urn:oid:2.16.840.1.113883.6.285"

EVENT_STATUS = [
    "preparation",
    "in-progress",
    "not-done",
    "on-hold",
    "stopped",
    "completed",
    "entered-in-error",
    "unknown",
]
REQUEST_STATUS = [
    "draft",
    "active",
    "on-hold",
    "revoked",
    "completed",
    "entered-in-error",
    "unknown",
]

PROCEDURE_BASE = [code_in("status", EVENT_STATUS)]

PROCEDURE = [
    *patient("subject"),
    *required("code"),
    coded_in_systems("code", SNOMED, CPT, ICD10PCS, HCPCS),
    Constraint(
        "performed[x]",
        "(status = 'completed' or status = 'in-progress') implies performed.exists()",
        "missing",
    ),
]

CAREPLAN_BASE = [
    code_in("status", REQUEST_STATUS),
    code_in("intent", ["proposal", "plan", "order", "option"]),
]

CAREPLAN = [
    has_coding("category", CAREPLAN_CATEGORY, "assess-plan"),
    *patient("subject"),
]

GOAL_BASE = [
    code_in(
        "lifecycleStatus",
        [
            "proposed",
            "planned",
            "accepted",
            "active",
            "on-hold",
            "completed",
            "cancelled",
            "entered-in-error",
            "rejected",
        ],
    ),
]

GOAL = [*patient("subject")]

SERVICE_REQUEST_BASE = [
    code_in("status", REQUEST_STATUS),
    code_in("intent", ["directive", *REQUEST_INTENT]),
]

SERVICE_REQUEST = [*required("code"), *patient("subject")]

TASK_BASE = [
    code_in(
        "status",
        [
            "draft",
            "requested",
            "received",
            "accepted",
            "rejected",
            "ready",
            "cancelled",
            "in-progress",
            "on-hold",
            "failed",
            "completed",
            "entered-in-error",
        ],
    ),
    code_in("intent", ["unknown", *REQUEST_INTENT]),
]

COMMUNICATION_BASE = [code_in("status", EVENT_STATUS)]

#: What a Provenance agent may be (R4 ``Provenance.agent.who``; US Core 6.1 the same, profiled).
PROVENANCE_BASE = [
    references(
        "who",
        "Practitioner",
        "PractitionerRole",
        "RelatedPerson",
        "Patient",
        "Device",
        "Organization",
        each="agent",
    ),
]

DOCUMENT_REFERENCE_BASE = [code_in("status", ["current", "superseded", "entered-in-error"])]
