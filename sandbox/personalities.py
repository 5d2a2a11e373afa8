"""Vendor personalities: how each tenant's FHIR endpoint deviates from plain R4.

The flags encode behaviour documented by the vendors so that the product's
adapters can be exercised against realistic quirks without a real EHR.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

LocationStyle = Literal["absolute_history", "absolute", "relative"]
CreateBody = Literal["prefer", "empty"]


@dataclass(frozen=True)
class Personality:
    """Behaviour flags for one vendor flavour of FHIR R4."""

    name: str
    honor_if_none_exist: bool = True
    """Conditional create (http.html#ccreate); when False the header is ignored."""
    etag: bool = True
    """Send ``ETag: W/"n"`` on writes and reads."""
    create_body: CreateBody = "prefer"
    """``prefer``: honour ``Prefer: return=...``; ``empty``: always an empty body."""
    location_style: LocationStyle = "absolute_history"
    update_allowed: bool = True
    vread_allowed: bool = True
    stale_if_match_status: int = 412
    writable_types: frozenset[str] | None = None
    """None means every R4 resource type can be written."""
    error_coding_system: str | None = None
    """When set, OperationOutcome issues carry ``details.coding`` with this system."""
    error_code: str = ""
    request_id_header: bool = False


R4 = Personality(name="r4")

# Epic on FHIR (fhir.epic.com, "Create" interaction docs): creates answer
# 201 Created with an empty body and a relative Location header
# ("Observation/eXYZ"), no ETag; conditional create is not supported so the
# If-None-Exist header is ignored; most resources are read/search only and update
# is not offered (405). Errors are OperationOutcomes whose issue details carry
# Epic's own code system (OID 1.2.840.114350.1.13.0.1.7.2.657369), e.g. 59008.
EPIC = Personality(
    name="epic",
    honor_if_none_exist=False,
    etag=False,
    create_body="empty",
    location_style="relative",
    update_allowed=False,
    vread_allowed=False,
    writable_types=frozenset(
        {"Observation", "Condition", "AllergyIntolerance", "DocumentReference"}
    ),
    error_coding_system="urn:oid:1.2.840.114350.1.13.0.1.7.2.657369",
    error_code="59008",
)

# Oracle Health (Cerner) Millennium R4 docs (fhir.cerner.com/millennium/r4):
# create returns 201 with no body (Content-Length: 0), an absolute Location
# without _history and ETag W/"1"; a stale If-Match on update yields
# 409 Conflict rather than 412; every response carries X-Request-Id for support
# correlation. Conditional create is not supported.
CERNER = Personality(
    name="cerner",
    honor_if_none_exist=False,
    create_body="empty",
    location_style="absolute",
    stale_if_match_status=409,
    request_id_header=True,
)

REGISTRY: dict[str, Personality] = {p.name: p for p in (R4, EPIC, CERNER)}
DEFAULT_PERSONALITY = "r4"
DEFAULT_TENANTS: dict[str, str] = {
    "demo-r4": "r4",
    "demo-epic": "epic",
    "demo-cerner": "cerner",
}


def parse_mapping(pairs: Iterable[str]) -> dict[str, str]:
    """Parse CLI ``TENANT=NAME`` pairs on top of :data:`DEFAULT_TENANTS`."""
    mapping = dict(DEFAULT_TENANTS)
    for pair in pairs:
        tenant, sep, name = pair.partition("=")
        if not sep or not tenant or name not in REGISTRY:
            raise ValueError(f"bad personality {pair!r}; expected TENANT=one of {sorted(REGISTRY)}")
        mapping[tenant] = name
    return mapping


def for_tenant(mapping: Mapping[str, str], tenant: str) -> Personality:
    """Personality of ``tenant``; unknown tenants get the strict R4 one."""
    return REGISTRY[mapping.get(tenant, DEFAULT_PERSONALITY)]
