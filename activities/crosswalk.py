"""The identity crosswalk step: replace internal references (``Patient/internal:123``) with the
tenant's own ids before the write is mapped.

A mapping comes from the crosswalk store; a missing one is looked up once by identifier search
against the tenant's FHIR server (``Patient?identifier={system}|{internal id}``) and stored with
its provenance, so the next write finds it without asking the EHR. No match, or more than one,
rejects the write (``unmapped``) before anything is written. Runs on the tenant's EHR task queue:
the lookup is EHR traffic and shares the tenant's rate limit, breaker and token.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field
from temporalio import activity

from activities.crosswalk_store import CrosswalkStore, Mapping
from activities.ehr_client import EhrClient
from activities.errors import ErrorClass, step_failure
from activities.fhir_http import id_of
from adapters.clinical_semantics import (
    ClinicalContext,
    EncounterPeriod,
    parse_fhir_time,
    time_problems,
)
from adapters.internal_refs import InternalRef, internal_refs, with_tenant_refs

IDENTIFIER_SEARCH = "identifier-search"


class CrosswalkInput(BaseModel):
    tenant: str
    request_id: str
    resource: dict[str, Any]
    requested_at: datetime


class CrosswalkResult(BaseModel):
    resource: dict[str, Any] = Field(description="the resource with the tenant's references")
    from_store: int = Field(description="references the crosswalk already knew")
    learned: int = Field(description="references found by identifier search and now stored")


class Crosswalk:
    def __init__(self, client: EhrClient, store: CrosswalkStore) -> None:
        self._ehr = client
        self._store = store

    @activity.defn(name="crosswalk")
    async def resolve(self, order: CrosswalkInput) -> CrosswalkResult:
        tenant = self._ehr.tenant(order.tenant)
        tenant_ids: dict[tuple[str, str], str] = {}
        found: dict[tuple[str, str], dict[str, Any]] = {}
        from_store = learned = 0
        for ref in internal_refs(order.resource):
            key = (ref.resource_type, ref.internal_id)
            if key in tenant_ids:
                continue
            if ref.resource_type not in tenant.crosswalk.types:
                raise step_failure(
                    ErrorClass.UNMAPPED,
                    f"{ref.path}: internal {ref.resource_type} references are not crosswalked for "
                    f"tenant '{tenant.id}' (crosswalk.types: {', '.join(tenant.crosswalk.types)})",
                )
            mapping = await asyncio.to_thread(
                self._store.get, tenant.id, ref.resource_type, ref.internal_id
            )
            if mapping is None:
                mapping, found[key] = await self._look_up(
                    order, ref, tenant.crosswalk.identifier_system
                )
                await asyncio.to_thread(self._store.put, mapping)
                learned += 1
            else:
                from_store += 1
            tenant_ids[key] = mapping.tenant_id
        resolved = with_tenant_refs(order.resource, tenant_ids)
        if tenant.adapter_version.checks_clinical_semantics:
            await self._check_encounter(order, resolved, tenant_ids, found)
        return CrosswalkResult(resource=resolved, from_store=from_store, learned=learned)

    async def _look_up(
        self, order: CrosswalkInput, ref: InternalRef, system: str
    ) -> tuple[Mapping, dict[str, Any]]:
        token = quote(f"{system}|{ref.internal_id}", safe="")
        query = f"{ref.resource_type}?identifier={token}"
        tenant = self._ehr.tenant(order.tenant)
        found = await self._ehr.search(tenant, query, order.request_id)
        # what the EHR answered is checked, not trusted: a match is of the type asked for, has a
        # FHIR id, and carries the identifier searched for (a lenient server may ignore it)
        matches = [m for m in found if _is_the_match(m, ref, system)]
        if len(matches) != 1 or len(found) != 1:
            what = "no" if not matches else f"{len(found)}"
            raise step_failure(
                ErrorClass.UNMAPPED,
                f"{ref.path}: {what} {ref.resource_type} in tenant '{order.tenant}' carries this "
                f"internal id (identifier system {system}); register the identifier on the "
                f"tenant's {ref.resource_type} record, or add the mapping with "
                f"`writeback tenants map {order.tenant} {ref.resource_type} <internal id> "
                "<tenant id>`, then submit the write again under a new idempotency key",
            )
        mapping = Mapping(
            tenant=order.tenant,
            resource_type=ref.resource_type,
            internal_id=ref.internal_id,
            tenant_id=matches[0]["id"],
            source=IDENTIFIER_SEARCH,
            learned_at=datetime.now(UTC),
            lookup=f"GET {ref.resource_type}?identifier={system}|<internal id>",
        )
        return mapping, matches[0]

    async def _check_encounter(
        self,
        order: CrosswalkInput,
        resolved: dict[str, Any],
        tenant_ids: dict[tuple[str, str], str],
        found: dict[tuple[str, str], dict[str, Any]],
    ) -> None:
        """Where the command names its encounter by internal id, the clinical time must fall
        inside that encounter's period (read from the tenant, or from the lookup just made)."""
        for (rtype, internal_id), tenant_id in tenant_ids.items():
            if rtype != "Encounter":
                continue
            encounter = found.get((rtype, internal_id))
            if encounter is None:
                query = f"Encounter?_id={quote(tenant_id, safe='')}"
                hits = await self._ehr.search(
                    self._ehr.tenant(order.tenant), query, order.request_id
                )
                asked = {"resourceType": rtype, "id": tenant_id}
                encounter = next((h for h in hits if asked.items() <= h.items()), {})
            period = encounter.get("period") or {}
            window = EncounterPeriod(
                parse_fhir_time(period.get("start")), parse_fhir_time(period.get("end"))
            )
            context = ClinicalContext(now=order.requested_at, encounter=window)
            if problems := time_problems(resolved, context):
                raise step_failure(ErrorClass.VALIDATION, "; ".join(str(p) for p in problems))


def _is_the_match(resource: dict[str, Any], ref: InternalRef, system: str) -> bool:
    identifiers = resource.get("identifier")
    return (
        resource.get("resourceType") == ref.resource_type
        and id_of(resource) is not None
        and any(
            isinstance(i, dict) and i.get("system") == system and i.get("value") == ref.internal_id
            for i in (identifiers if isinstance(identifiers, list) else [])
        )
    )
