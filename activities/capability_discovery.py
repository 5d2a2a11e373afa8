"""Capability discovery: fetch a tenant's CapabilityStatement and SMART configuration, and keep
the last profile per tenant (JSON under ``{state dir}/capabilities/``) to diff the next against.

Both discovery documents are public (no token), as FHIR and SMART specify.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import httpx
from pydantic import BaseModel
from temporalio import activity

from activities.errors import ErrorClass, known_tenant, step_failure
from adapters.capability_profile import (
    CapabilityProfile,
    build_profile,
    config_mismatches,
    profile_diff,
)
from adapters.errors import WritebackError
from adapters.tenants import Tenant, TenantRegistry

FHIR_JSON = "application/fhir+json"


class DiscoveryFailed(WritebackError):
    """The tenant's discovery documents could not be read; the message says which and why."""


async def discover(tenant: Tenant, http: httpx.AsyncClient) -> CapabilityProfile:
    base = tenant.base_url()
    try:
        metadata = await http.get(
            f"{base}/metadata", headers={"Accept": FHIR_JSON}, timeout=tenant.timeout_seconds
        )
        smart = await http.get(
            f"{base}/.well-known/smart-configuration", timeout=tenant.timeout_seconds
        )
    except httpx.HTTPError as exc:
        raise DiscoveryFailed(f"{base}: {type(exc).__name__}") from None
    if metadata.status_code != 200:
        raise DiscoveryFailed(f"GET {base}/metadata answered HTTP {metadata.status_code}")
    try:
        statement = metadata.json()
        configuration = smart.json() if smart.status_code == 200 else None
    except ValueError:
        raise DiscoveryFailed(f"{base}: a discovery document is not JSON") from None
    if not isinstance(statement, dict) or statement.get("resourceType") != "CapabilityStatement":
        raise DiscoveryFailed(f"GET {base}/metadata did not return a CapabilityStatement")
    return build_profile(statement, configuration if isinstance(configuration, dict) else None)


@dataclass(frozen=True)
class ProfileStore:
    state_dir: Path

    def _path(self, tenant_id: str) -> Path:
        return self.state_dir / "capabilities" / f"{tenant_id}.json"

    def load(self, tenant_id: str) -> CapabilityProfile | None:
        path = self._path(tenant_id)
        if not path.exists():
            return None
        try:
            return CapabilityProfile.model_validate(json.loads(path.read_text()))
        except ValueError:
            return None  # unreadable: treat as never discovered; the next save replaces it

    def save(self, tenant_id: str, profile: CapabilityProfile) -> Path:
        path = self._path(tenant_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(profile.model_dump_json(indent=2))
        return path


class DiscoveryReport(BaseModel):
    """What a discovery run found: changes since the last profile, mismatches with the config.
    Capability facts only (no patient data): safe in history, logs and the Schedule's view."""

    tenant: str
    first_check: bool
    changes: list[str]
    mismatches: list[str]


class CapabilityDiscovery:
    """Discovery as an activity, for the per-tenant Temporal Schedule (``tenants schedule``)."""

    def __init__(self, tenants: TenantRegistry, http: httpx.AsyncClient, store: ProfileStore):
        self._tenants = tenants
        self._http = http
        self._store = store

    @activity.defn(name="discover_capabilities")
    async def run(self, tenant_id: str) -> DiscoveryReport:
        tenant = known_tenant(self._tenants, tenant_id)
        try:
            profile = await discover(tenant, self._http)
        except DiscoveryFailed as exc:
            raise step_failure(ErrorClass.TRANSIENT, str(exc)) from None
        return check_and_store(tenant, profile, self._store)


def check_and_store(
    tenant: Tenant, profile: CapabilityProfile, store: ProfileStore
) -> DiscoveryReport:
    """Diff ``profile`` against the stored one, list config mismatches, store it as the last."""
    previous = store.load(tenant.id)
    report = DiscoveryReport(
        tenant=tenant.id,
        first_check=previous is None,
        changes=profile_diff(previous, profile),
        mismatches=config_mismatches(tenant, profile),
    )
    store.save(tenant.id, profile)
    return report
