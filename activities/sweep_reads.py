"""The EHR reads of a reconciliation sweep (workflows/reconcile_sweep.py): ``scan`` lists what
carries a command identifier of ours, ``examine`` reads candidates one by one for drift and loss.
Same client, so the same breaker, pacer, token and taxonomy as the writes."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from temporalio import activity

from activities.ehr_client import EhrClient
from activities.fhir_http import json_body, version_of
from activities.models import (
    ExamineOrder,
    Finding,
    FindingKind,
    ScannedResource,
    ScanOrder,
    ScanResult,
)
from adapters.compensation import is_withdrawn
from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM, TAGGED_TYPES, differences, identifier_values
from adapters.ids import write_id_of


class SweepReads:
    def __init__(self, client: EhrClient) -> None:
        self._ehr = client

    @activity.defn(name="scan")
    async def scan(self, order: ScanOrder) -> ScanResult:
        """Every resource carrying a command identifier of ours, updated since ``order.since``,
        for each resource type the tenant lets us write (a reconciliation sweep's first step)."""
        tenant = self._ehr.tenant(order.tenant)
        if tenant.capabilities.drops_identifiers:
            return ScanResult(resources=[], searchable=False)
        since = quote(order.since.isoformat(timespec="seconds"), safe="")
        found: list[ScannedResource] = []
        for resource_type in sorted(tenant.capabilities.writable):
            parameter = "_tag" if resource_type in TAGGED_TYPES else "identifier"
            path: str | None = (
                f"{resource_type}?{parameter}={quote(COMMAND_IDENTIFIER_SYSTEM, safe='')}%7C"
                f"&_lastUpdated=ge{since}&_count=500"
            )
            while path:
                activity.heartbeat(resource_type, len(found))
                response = await self._ehr.send(tenant, "GET", path, order.request_id)
                if response.status_code != 200:
                    raise self._ehr.failure(response, f"sweep search {resource_type}")
                bundle = json_body(response) or {}
                for entry in bundle.get("entry", []):
                    if scanned := _scanned(entry.get("resource") or {}):
                        found.append(scanned)
                path = self._ehr.next_page(bundle, tenant)
        return ScanResult(resources=found, searchable=True)

    @activity.defn(name="examine")
    async def examine(self, order: ExamineOrder) -> list[Finding]:
        """Read each candidate directly: gone or entered-in-error is ``missing``; a version other
        than the one we verified whose content differs from it (vread) is ``drift``."""
        tenant = self._ehr.tenant(order.tenant)
        findings: list[Finding] = []
        for candidate in order.candidates:
            activity.heartbeat(len(findings))
            current = await self._ehr.read(tenant, candidate.reference, order.request_id)
            write_id = write_id_of(candidate.command)
            if current is None or is_withdrawn(current):
                what = "gone" if current is None else "entered-in-error"
                findings.append(
                    Finding(
                        kind=FindingKind.MISSING,
                        tenant=tenant.id,
                        command=candidate.command,
                        write_id=write_id,
                        resources=[candidate.reference],
                        detail=f"{candidate.reference} was verified, and is now {what}",
                    )
                )
                continue
            version = version_of(current)
            if version == candidate.version or candidate.version is None:
                continue
            ours = None
            if tenant.capabilities.vread:
                ours = await self._ehr.vread(
                    tenant, candidate.reference, candidate.version, order.request_id
                )
            changed = differences(ours, current) if ours else ["(version history unavailable)"]
            if changed:
                findings.append(
                    Finding(
                        kind=FindingKind.DRIFT,
                        tenant=tenant.id,
                        command=candidate.command,
                        write_id=write_id,
                        resources=[candidate.reference],
                        detail=f"{candidate.reference} changed since version {candidate.version} "
                        f"we verified (now {version}) at: {', '.join(changed[:10])}",
                    )
                )
        return findings


def _scanned(resource: dict[str, Any]) -> ScannedResource | None:
    commands = identifier_values(resource, COMMAND_IDENTIFIER_SYSTEM)
    if not commands or "id" not in resource:
        return None
    last_updated = (resource.get("meta") or {}).get("lastUpdated")
    return ScannedResource(
        reference=f"{resource['resourceType']}/{resource['id']}",
        version=version_of(resource),
        command=commands[0],
        withdrawn=is_withdrawn(resource),
        last_updated=last_updated if isinstance(last_updated, str) else None,
    )
