"""Vendor personalities: how each tenant's FHIR endpoint deviates from plain R4.

Each flag encodes behaviour the vendor documents publicly; the source is cited
next to the personality (and in ``sandbox/README.md``). Content rules that look
inside resources (Epic's vital-sign status, Cerner's DocumentReference content)
live in :mod:`sandbox.vendor_rules`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

LocationStyle = Literal["absolute_history", "absolute", "relative"]
CreateBody = Literal["prefer", "empty"]

EPIC_ERROR_SYSTEM = "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369"


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
    delete_allowed: bool = True
    patch_allowed: bool = True
    batch_allowed: bool = True
    """batch and transaction Bundles posted to the base URL."""
    conditional_update: bool = True
    vread_allowed: bool = True
    history_allowed: bool = True
    stale_if_match_status: int = 412
    """The answer to an If-Match naming another version than the current one."""
    update_requires_if_match: bool = False
    """An update (PUT) without If-Match answers 412; when False it is taken unconditionally, as
    plain R4 takes it (http.html#concurrency: version-aware updates are the client's choice)."""
    writable_types: frozenset[str] | None = None
    """None means every R4 resource type can be written."""
    unwritable_status: int = 403
    unwritable_empty_body: bool = False
    read_only: bool = False
    """Every write answers 405 (the FHIR API is read-only)."""
    holding_tank_types: frozenset[str] = frozenset()
    """Created resources of these types are readable but hidden from search until reviewed."""
    error_coding_system: str | None = None
    """When set, OperationOutcome issues carry ``details.coding`` with this system."""
    error_code: str = ""
    request_id_headers: tuple[str, ...] = ()
    required_query_param: str | None = None
    """A query parameter every FHIR call must carry (athenaOne's ``ah-practice``)."""
    max_in_flight: int | None = None
    """Concurrent FHIR requests per tenant above which the tenant answers 429."""


R4 = Personality(name="r4")
"""Strict FHIR R4 (hl7.org/fhir/R4/http.html): everything the spec describes."""

# Epic on FHIR (fhir.epic.com), e.g. "Observation.Create (Vitals) (R4)",
# "Condition.Create (Problems) (R4)", "AllergyIntolerance.Create (R4)":
# creates answer 201 Created with an empty body and a relative Location
# ("Observation/eXYZ"), no ETag; If-None-Exist is not supported (ignored); only a
# few types are writable and only by create (no update, PATCH or transaction);
# a client not registered for an API gets 403 with an empty body; errors are
# OperationOutcomes coded in Epic's OID system (docs/vendors.md quirks 3-8).
EPIC = Personality(
    name="epic",
    honor_if_none_exist=False,
    etag=False,
    create_body="empty",
    location_style="relative",
    update_allowed=False,
    delete_allowed=False,
    patch_allowed=False,
    batch_allowed=False,
    conditional_update=False,
    vread_allowed=False,
    history_allowed=False,
    writable_types=frozenset(
        {"Observation", "Condition", "AllergyIntolerance", "DocumentReference"}
    ),
    unwritable_empty_body=True,
    holding_tank_types=frozenset({"AllergyIntolerance", "Condition"}),
    error_coding_system=EPIC_ERROR_SYSTEM,
    error_code="59008",
)

# Oracle Health Millennium Platform FHIR R4 API (fhir.cerner.com/millennium/r4),
# "Observation create/update", "DocumentReference create": create returns 201
# with Content-Length: 0, an absolute Location without _history and ETag W/"1";
# a stale If-Match on update yields 409 Conflict (not 412), and an update without
# If-Match is refused with 412 (Cerner FHIR developers group, "Updating a resource
# causes: Status: 412 Precondition Failed": "no If-Match or invalid If-Match header
# provided ... To update, you must send the If-Match header"); responses carry
# X-Request-Id and opc-request-id for support correlation; conditional create and
# PATCH are not offered (docs/vendors.md quirks 9-12).
CERNER = Personality(
    name="cerner",
    honor_if_none_exist=False,
    create_body="empty",
    location_style="absolute",
    patch_allowed=False,
    batch_allowed=False,
    conditional_update=False,
    stale_if_match_status=409,
    update_requires_if_match=True,
    request_id_headers=("X-Request-Id", "opc-request-id"),
    # the types Millennium R4 documents a create for (docs/vendors.md quirk 17; Observation by
    # category in sandbox/vendor_rules.py); the saga types kept as they were
    writable_types=frozenset(
        {
            "Observation",
            "Condition",
            "AllergyIntolerance",
            "DocumentReference",
            "MedicationRequest",
            "Procedure",
            "ServiceRequest",
            "Task",
            "Communication",
            "Provenance",
        }
    ),
)

# athenaOne FHIR R4 API (docs.athenahealth.com, "athenaOne FHIR R4 API"; Athena
# Core Implementation Guide, extension "ah-practice" at fhir.athena.io): every
# FHIR call names the practice with ah-practice=Organization/a-1.Practice-{id};
# FHIR create exists only for QuestionnaireResponse (clinical writes use the
# proprietary /v1/{practiceid} API); athenaPractice answers 429 beyond ~30
# concurrent requests (docs/vendors.md quirks 13-14).
ATHENA = Personality(
    name="athena",
    honor_if_none_exist=False,
    update_allowed=False,
    delete_allowed=False,
    patch_allowed=False,
    batch_allowed=False,
    conditional_update=False,
    writable_types=frozenset({"QuestionnaireResponse"}),
    unwritable_status=405,
    required_query_param="ah-practice",
    max_in_flight=30,
)

# Veradigm FHIR API (developer.veradigm.com, "Veradigm FHIR API"): the FHIR R4
# endpoint is read-only; writes go through the proprietary Unity API (SaveNote,
# SaveVitals...), so every FHIR write is refused (docs/vendors.md quirk 15).
VERADIGM = Personality(
    name="veradigm",
    honor_if_none_exist=False,
    update_allowed=False,
    delete_allowed=False,
    patch_allowed=False,
    batch_allowed=False,
    conditional_update=False,
    read_only=True,
)

REGISTRY: dict[str, Personality] = {p.name: p for p in (R4, EPIC, CERNER, ATHENA, VERADIGM)}
DEFAULT_PERSONALITY = "r4"
DEFAULT_TENANTS: dict[str, str] = {
    "demo-r4": "r4",
    "demo-epic": "epic",
    "demo-cerner": "cerner",
    "demo-athena": "athena",
    "demo-veradigm": "veradigm",
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
