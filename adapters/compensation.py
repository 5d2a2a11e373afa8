"""Clinical compensation: how a resource written in error is withdrawn from the chart without
deleting it (FHIR R4 status value sets: a DELETE would erase what clinicians may already have seen).

Each resource type has one "withdrawn" form, applied as a narrow delta on the current version:

- ServiceRequest ``status = revoked`` (request-status: "terminated or cancelled before completion")
- Task ``status = cancelled`` (task-status)
- Observation, DiagnosticReport, DocumentReference, Communication, MedicationRequest,
  MedicationStatement, Immunization, Procedure, CarePlan ``status = entered-in-error`` (each
  type's own status value set has that code)
- Goal ``lifecycleStatus = entered-in-error`` (goal-status; a Goal has no ``status``)
- Condition, AllergyIntolerance ``verificationStatus = entered-in-error`` (they have no status),
  and ``clinicalStatus`` removed: invariants con-5 and ait-2 forbid a clinical status beside it.
  An element set to None in a withdrawn form means "removed" (adapters/fhir_r4.py ``differences``).

Provenance has no status at all: it cannot be withdrawn, so a saga writes it last.
"""

from __future__ import annotations

from typing import Any

from adapters.tenants import Interaction, Tenant

ENTERED_IN_ERROR = "entered-in-error"

_STATUS_WITHDRAWN: dict[str, str] = {
    "ServiceRequest": "revoked",
    "Task": "cancelled",
    "Observation": ENTERED_IN_ERROR,
    "DiagnosticReport": ENTERED_IN_ERROR,
    "DocumentReference": ENTERED_IN_ERROR,
    "Communication": ENTERED_IN_ERROR,
    "MedicationRequest": ENTERED_IN_ERROR,
    "MedicationStatement": ENTERED_IN_ERROR,
    "Immunization": ENTERED_IN_ERROR,
    "Procedure": ENTERED_IN_ERROR,
    "CarePlan": ENTERED_IN_ERROR,
}

_LIFECYCLE_WITHDRAWN: dict[str, str] = {"Goal": ENTERED_IN_ERROR}

_VERIFICATION_WITHDRAWN: dict[str, str] = {
    "Condition": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
    "AllergyIntolerance": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
}

#: Every resource type that has a withdrawn form.
WITHDRAWABLE_TYPES = (
    frozenset(_STATUS_WITHDRAWN) | set(_LIFECYCLE_WITHDRAWN) | set(_VERIFICATION_WITHDRAWN)
)


def withdrawal(resource_type: str) -> dict[str, Any] | None:
    """The elements that withdraw a resource of this type (None as a value: that element is
    removed), or None when the type has no way to be withdrawn (e.g. Provenance)."""
    if status := _STATUS_WITHDRAWN.get(resource_type):
        return {"status": status}
    if lifecycle := _LIFECYCLE_WITHDRAWN.get(resource_type):
        return {"lifecycleStatus": lifecycle}
    if system := _VERIFICATION_WITHDRAWN.get(resource_type):
        return {
            "verificationStatus": {"coding": [{"system": system, "code": ENTERED_IN_ERROR}]},
            "clinicalStatus": None,
        }
    return None


def _codes(concept: Any) -> list[Any]:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return (
        [c.get("code") for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []
    )


def is_withdrawn(resource: dict[str, Any]) -> bool:
    """Whether a stored resource is already out of the chart (withdrawn, by us or by a person):
    its type's withdrawn form, or entered-in-error in whichever of ``status``,
    ``lifecycleStatus`` or ``verificationStatus`` a person chose (a Condition entered in error
    with its clinical status left behind is still out of the chart)."""
    withdrawn_status = _STATUS_WITHDRAWN.get(str(resource.get("resourceType")), ENTERED_IN_ERROR)
    if resource.get("status") in (ENTERED_IN_ERROR, withdrawn_status):
        return True
    if resource.get("lifecycleStatus") == ENTERED_IN_ERROR:
        return True
    return ENTERED_IN_ERROR in _codes(resource.get("verificationStatus"))


def can_compensate(tenant: Tenant, resource_type: str) -> bool:
    """A tenant can withdraw what its vendor's API updates and the tenant accepts updates for,
    when the type has a withdrawn form. Others cannot: a saga writes such resources last.

    Whether the vendor's API updates at all is its adapter's ``updates``: Epic is create-only
    (fhir.epic.com); athenaOne's chart API and Veradigm Unity as adapted here offer creates and
    deletes only (a delete is not a clinical undo)."""
    return (
        withdrawal(resource_type) is not None
        and tenant.adapter().updates
        and tenant.capabilities.allows(resource_type, Interaction.UPDATE)
    )
