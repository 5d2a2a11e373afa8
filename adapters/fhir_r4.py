"""The FHIR R4 write adapter: how a canonical resource becomes a create request, and how what the
EHR stored is compared with what we sent.

Epic, Oracle Health and generic R4 servers all take FHIR creates; what differs between them for a
create is captured by the tenant's capabilities (conditional create or not). athenahealth and
Veradigm write through proprietary APIs and have no adapter yet.
"""

from __future__ import annotations

import copy
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from adapters.tenants import Tenant, Vendor

FHIR_JSON = "application/fhir+json"

#: FHIR identifier system stamped on every resource we create (value ``{tenant}:{key}``): the
#: EHR-side idempotency key, and how reconciliation finds our writes later.
COMMAND_IDENTIFIER_SYSTEM = "urn:writeback:command"

#: Elements the server owns: never part of a content comparison.
SERVER_MANAGED = frozenset({"id", "meta", "text"})


class DedupStrategy(StrEnum):
    """How the EHR side of idempotency works for a tenant (the second layer after workflow ids)."""

    CONDITIONAL_CREATE = "conditional_create"  # If-None-Exist on the command identifier
    SEARCH_BEFORE_CREATE = "search_before_create"  # look for the identifier, create if absent


class UnsupportedVendor(Exception):
    """The tenant's vendor has no FHIR write path in this version."""


class CreateRequest(BaseModel):
    """A create, ready to send: the body carries the command identifier."""

    resource_type: str
    body: dict[str, Any]
    identifier_system: str
    identifier_value: str
    dedup: DedupStrategy

    @property
    def identifier_token(self) -> str:
        """``system|value`` search token, URL-encoded for a query string."""
        return quote(f"{self.identifier_system}|{self.identifier_value}", safe="")

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
        if self.dedup is DedupStrategy.CONDITIONAL_CREATE:
            headers["If-None-Exist"] = f"identifier={self.identifier_token}"
        return headers


FHIR_WRITE_VENDORS = frozenset({Vendor.EPIC, Vendor.CERNER, Vendor.GENERIC_R4})


def prepare_create(
    tenant: Tenant,
    resource: dict[str, Any],
    identifier_value: str,
    identifier_system: str = COMMAND_IDENTIFIER_SYSTEM,
) -> CreateRequest:
    if tenant.vendor not in FHIR_WRITE_VENDORS:
        raise UnsupportedVendor(f"vendor {tenant.vendor} has no FHIR create path yet")
    body = copy.deepcopy({k: v for k, v in resource.items() if k not in {"id", "meta"}})
    identifiers = [
        ident for ident in body.get("identifier", []) if ident.get("system") != identifier_system
    ]
    identifiers.append({"system": identifier_system, "value": identifier_value})
    body["identifier"] = identifiers
    dedup = (
        DedupStrategy.CONDITIONAL_CREATE
        if tenant.capabilities.conditional_create
        else DedupStrategy.SEARCH_BEFORE_CREATE
    )
    return CreateRequest(
        resource_type=body["resourceType"],
        body=body,
        identifier_system=identifier_system,
        identifier_value=identifier_value,
        dedup=dedup,
    )


def differences(sent: Any, stored: Any, path: str = "") -> list[str]:
    """Paths where ``stored`` lacks or changed what we ``sent`` (extra stored elements are fine)."""
    if isinstance(sent, dict) and isinstance(stored, dict):
        found: list[str] = []
        for key, value in sent.items():
            if not path and key in SERVER_MANAGED:
                continue
            child = f"{path}.{key}" if path else key
            if key not in stored:
                found.append(child)
            else:
                found += differences(value, stored[key], child)
        return found
    if isinstance(sent, list) and isinstance(stored, list):
        if len(sent) != len(stored):
            return [path]
        return [
            diff
            for index, (a, b) in enumerate(zip(sent, stored, strict=True))
            for diff in differences(a, b, f"{path}[{index}]")
        ]
    return [] if sent == stored else [path]
