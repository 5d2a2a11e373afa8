"""Tenant settings: personality and per-tenant options (not faults, not auth).

``{"personality": "epic",
   "allowed_identifier_systems": ["urn:oid:..."],   # drops custom identifiers
   "max_in_flight": 30,                              # 429 above N concurrent requests
   "rejects_duplicate_vitals": true,                 # Epic's 400 59189 on a repeated reading
   "paging": "hapi"}``                               # next links {base}?_getpages=...

``allowed_identifier_systems`` (any personality): identifiers whose system is not
listed are removed on store, like EHRs that keep only their own identifier types.
``max_in_flight`` defaults to the personality's (athena: 30; others: unlimited).
``rejects_duplicate_vitals`` (off by default, because fixtures reuse one reading): a vital-sign
create for a patient, code and time already on file answers Epic's 400 with code 59189
"Reading already exists" (see :func:`sandbox.vendor_rules.epic_duplicate_vital`).
``paging``: ``"offset"`` (default: ``{base}/{Type}?...&_count=N&_offset=M`` links) or ``"hapi"``
(HAPI FHIR's ``{base}?_getpages=...`` links, see :mod:`sandbox.paging`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sandbox.paging import PAGING_STYLES, PagingStyle
from sandbox.personalities import DEFAULT_PERSONALITY, REGISTRY, Personality

_UNSET: Any = object()


@dataclass(frozen=True)
class TenantSettings:
    personality: str = DEFAULT_PERSONALITY
    allowed_identifier_systems: frozenset[str] | None = None
    max_in_flight: int | None = None
    rejects_duplicate_vitals: bool = False
    paging: PagingStyle = "offset"

    @property
    def p(self) -> Personality:
        return REGISTRY[self.personality]

    @property
    def in_flight_limit(self) -> int | None:
        return self.max_in_flight if self.max_in_flight is not None else self.p.max_in_flight

    def to_json(self) -> dict[str, Any]:
        allowed = self.allowed_identifier_systems
        return {
            "personality": self.personality,
            "allowed_identifier_systems": None if allowed is None else sorted(allowed),
            "max_in_flight": self.in_flight_limit,
            "rejects_duplicate_vitals": self.rejects_duplicate_vitals,
            "paging": self.paging,
        }


def parse_settings(raw: Any, base: TenantSettings) -> TenantSettings:
    """Apply the fields present in ``raw`` on top of ``base`` (raises ValueError)."""
    if not isinstance(raw, dict):
        raise ValueError("tenant settings must be an object")
    known = {
        "personality",
        "allowed_identifier_systems",
        "max_in_flight",
        "rejects_duplicate_vitals",
        "paging",
    }
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown tenant fields: {sorted(unknown)}")
    out = base
    if "personality" in raw:
        if raw["personality"] not in REGISTRY:
            raise ValueError(f"personality must be one of {sorted(REGISTRY)}")
        out = replace(out, personality=raw["personality"])
    if "allowed_identifier_systems" in raw:
        systems = raw["allowed_identifier_systems"]
        if systems is not None and (
            not isinstance(systems, list) or not all(isinstance(s, str) for s in systems)
        ):
            raise ValueError("allowed_identifier_systems must be a list of strings or null")
        out = replace(
            out, allowed_identifier_systems=None if systems is None else frozenset(systems)
        )
    if "max_in_flight" in raw:
        limit = raw["max_in_flight"]
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            raise ValueError("max_in_flight must be a positive integer or null")
        out = replace(out, max_in_flight=limit)
    if "rejects_duplicate_vitals" in raw:
        if not isinstance(raw["rejects_duplicate_vitals"], bool):
            raise ValueError("rejects_duplicate_vitals must be true or false")
        out = replace(out, rejects_duplicate_vitals=raw["rejects_duplicate_vitals"])
    if "paging" in raw:
        style = next((s for s in PAGING_STYLES if s == raw["paging"]), None)
        if style is None:
            raise ValueError(f"paging must be one of {list(PAGING_STYLES)}")
        out = replace(out, paging=style)
    return out


class TenantRegistry:
    """Settings per tenant; unknown tenants get the strict R4 defaults."""

    def __init__(self, initial: Mapping[str, TenantSettings]) -> None:
        self._lock = threading.Lock()
        self._initial = dict(initial)
        self._tenants = dict(initial)

    def get(self, tenant: str) -> TenantSettings:
        return self._tenants.get(tenant) or TenantSettings()

    def set(self, tenant: str, settings: TenantSettings) -> None:
        with self._lock:
            self._tenants[tenant] = settings

    def reset(self, tenant: str | None = None) -> None:
        with self._lock:
            if tenant is None:
                self._tenants = dict(self._initial)
            elif tenant in self._initial:
                self._tenants[tenant] = self._initial[tenant]
            else:
                self._tenants.pop(tenant, None)
