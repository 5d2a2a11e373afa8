"""Can a write be undone clinically on this tenant? (The saga's question before it relies on it.)

Compensation never deletes: it marks what was written as a mistake — ``entered-in-error`` (or
``revoked`` for orders) — which needs an update of that resource at the EHR. Epic is create-only
(no update: fhir.epic.com), athenaOne's chart API and Veradigm Unity as adapted here offer only
creates and deletes (a delete is not a clinical undo). Oracle Health and strict R4 servers update,
so they can, for the resource types the tenant may update.
"""

from __future__ import annotations

from adapters.tenants import Interaction, Tenant, Vendor

#: Resource type -> (element, value) that marks a resource as written in error.
COMPENSATION_MARKERS: dict[str, tuple[str, str]] = {
    "Observation": ("status", "entered-in-error"),
    "DocumentReference": ("status", "entered-in-error"),
    "Condition": ("verificationStatus", "entered-in-error"),
    "AllergyIntolerance": ("verificationStatus", "entered-in-error"),
    "ServiceRequest": ("status", "revoked"),
    "Task": ("status", "entered-in-error"),
    "Communication": ("status", "entered-in-error"),
}
#: Vendors whose write API can change a stored resource's status.
_UPDATING_VENDORS = frozenset({Vendor.CERNER, Vendor.GENERIC_R4})


def can_compensate(tenant: Tenant, resource_type: str) -> bool:
    """True when ``tenant`` lets us mark a ``resource_type`` we wrote as entered-in-error/revoked:
    the type has such a status, the vendor's write API updates, and the tenant allows updates."""
    return (
        resource_type in COMPENSATION_MARKERS
        and tenant.vendor in _UPDATING_VENDORS
        and tenant.capabilities.allows(resource_type, Interaction.UPDATE)
    )
