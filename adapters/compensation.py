"""Clinical compensation: how a resource written in error is withdrawn from the chart without
deleting it (FHIR R4 status value sets: a DELETE would erase what clinicians may already have seen).

Each resource type has one "withdrawn" form, applied as a narrow delta on the current version:

- ServiceRequest ``status = revoked`` (request-status: "terminated or cancelled before completion")
- Task ``status = cancelled`` (task-status)
- Observation, DocumentReference, Communication… ``status = entered-in-error``
- Condition, AllergyIntolerance ``verificationStatus = entered-in-error`` (they have no status)

Provenance has no status at all: it cannot be withdrawn, so a saga writes it last.
"""

from __future__ import annotations

from typing import Any

from adapters.tenants import Interaction, Tenant

_STATUS_WITHDRAWN: dict[str, str] = {
    "ServiceRequest": "revoked",
    "Task": "cancelled",
    "Observation": "entered-in-error",
    "DocumentReference": "entered-in-error",
    "Communication": "entered-in-error",
    "MedicationRequest": "entered-in-error",
    "Procedure": "entered-in-error",
    "Immunization": "entered-in-error",
    "DiagnosticReport": "entered-in-error",
    "CarePlan": "entered-in-error",
}

_VERIFICATION_WITHDRAWN: dict[str, str] = {
    "Condition": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
    "AllergyIntolerance": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
}


def withdrawal(resource_type: str) -> dict[str, Any] | None:
    """The elements that withdraw a resource of this type, or None when the type has no way to
    be withdrawn (e.g. Provenance)."""
    if status := _STATUS_WITHDRAWN.get(resource_type):
        return {"status": status}
    if system := _VERIFICATION_WITHDRAWN.get(resource_type):
        return {"verificationStatus": {"coding": [{"system": system, "code": "entered-in-error"}]}}
    return None


def is_withdrawn(resource: dict[str, Any]) -> bool:
    """Whether a stored resource is already out of the chart (withdrawn, by us or by a person)."""
    expected = withdrawal(str(resource.get("resourceType")))
    if expected is None:
        return False
    return all(resource.get(key) == value for key, value in expected.items()) or (
        resource.get("status") == "entered-in-error"
    )


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
