"""The EHR reads of a reconciliation sweep (workflows/reconcile_sweep.py): ``scan`` lists what
carries a command identifier of ours, ``examine`` reads candidates one by one for drift and loss.
Same client, so the same breaker, pacer, token and taxonomy as the writes."""

from __future__ import annotations

from urllib.parse import quote

from temporalio import activity

from activities.ehr_client import EhrClient
from activities.fhir_http import id_of, json_body, meta_of, version_of
from activities.models import (
    Candidate,
    ExamineOrder,
    Finding,
    FindingKind,
    ScannedResource,
    ScanOrder,
    ScanResult,
)
from adapters.compensation import is_withdrawn
from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM, TAGGED_TYPES, differences, identifier_values
from adapters.ids import is_command_of, write_id_of


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
                entries = bundle.get("entry")
                for entry in entries if isinstance(entries, list) else []:
                    resource = entry.get("resource") if isinstance(entry, dict) else None
                    if scanned := _scanned(resource, tenant.id, resource_type):
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
            if current is None or is_withdrawn(current):
                what = "gone" if current is None else "entered-in-error"
                detail = f"{candidate.reference} was verified, and is now {what}"
                findings.append(_finding(tenant.id, candidate, FindingKind.MISSING, detail))
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
                detail = (
                    f"{candidate.reference} changed since version {candidate.version} "
                    f"we verified (now {version}) at: {', '.join(changed[:10])}"
                )
                findings.append(_finding(tenant.id, candidate, FindingKind.DRIFT, detail))
        return findings


def _finding(tenant: str, candidate: Candidate, kind: FindingKind, detail: str) -> Finding:
    return Finding(
        kind=kind,
        tenant=tenant,
        command=candidate.command,
        write_id=write_id_of(candidate.command),
        resources=[candidate.reference],
        detail=detail,
    )


def _scanned(resource: object, tenant: str, resource_type: str) -> ScannedResource | None:
    """One of ours, from an entry of the scan's search; None for anything else. Every value is
    the EHR's, and an EHR user can write an identifier: a command identifier counts only when it
    is one of this tenant's (``{tenant}:{token}``, adapters/ids.py) and the resource only when it
    is of the type searched, with a FHIR id. (Another tenant's prefix, quotes that would end a
    visibility query, a patient's name as a "key": none of it goes further.)"""
    if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
        return None
    resource_id = id_of(resource)
    commands = identifier_values(resource, COMMAND_IDENTIFIER_SYSTEM)
    ours = [c for c in commands if is_command_of(tenant, c)]
    if not ours or resource_id is None:
        return None
    last_updated = meta_of(resource).get("lastUpdated")
    return ScannedResource(
        reference=f"{resource_type}/{resource_id}",
        version=version_of(resource),
        command=ours[0],
        withdrawn=is_withdrawn(resource),
        last_updated=last_updated if isinstance(last_updated, str) else None,
    )
