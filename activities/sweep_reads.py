"""The reconciliation sweep's steps (workflows/reconcile_sweep.py), one page at a time.

``window``: from when to examine (what was asked, else the tenant's watermark less an overlap for
clock skew, else the lookback). ``page``: one page of the EHR's search for resources carrying our
command identifiers, judged against the durable record of our writes (activities/write_records.py)
— then, once every type is scanned, a page of the writes in the chart that no page showed, read
directly. A page's findings leave the activity, never the page: nothing grows with the window.
When the last page is done, the watermark moves to the sweep's start.

Same EHR client as the writes, so the same breaker, pacer, token and error taxonomy.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from urllib.parse import quote

from temporalio import activity
from temporalio.client import Client

from activities.ehr_client import EhrClient
from activities.fhir_http import id_of, json_body, version_of
from activities.models import (
    Finding,
    ScannedResource,
    SweepCursor,
    SweepPage,
    SweepPageOrder,
    SweepWindow,
    SweepWindowOrder,
)
from activities.sweep_judge import judge, keeps_no_identifier, missing_or_drift
from activities.write_records import WriteRecord, WriteRecords
from activities.written_before_records import records_from_temporal
from adapters.compensation import is_withdrawn
from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM, TAGGED_TYPES, identifier_values
from adapters.ids import is_command_of
from adapters.tenants import Tenant

#: Writes per page of direct reads (each one a request).
WRITES_PER_PAGE = 50
#: Each sweep starts this much before the last one's start: the EHR's clock may run behind ours.
CLOCK_SKEW = timedelta(minutes=5)


class SweepReads:
    def __init__(self, client: EhrClient, records: WriteRecords, temporal: Client) -> None:
        self._ehr = client
        self._records = records
        self._temporal = temporal

    @activity.defn(name="sweep_window")
    async def window(self, order: SweepWindowOrder) -> SweepWindow:
        tenant = self._ehr.tenant(order.tenant)
        notes = []
        if keeps_no_identifier(tenant):
            notes.append(
                "the EHR keeps no identifier of ours: each write in the window was read "
                "(missing, drift) and its patient's resources searched for copies by content "
                "(duplicate); a resource no write of ours made cannot be told apart (no orphans)"
            )
        retention = timedelta(days=tenant.reconcile.record_retention_days)
        await asyncio.to_thread(self._records.forget_before, tenant.id, order.now - retention)
        if order.since is not None:
            return SweepWindow(since=order.since, from_watermark=False, notes=notes)
        mark = await asyncio.to_thread(self._records.examined_until, tenant.id)
        if mark is None:
            since = order.now - timedelta(hours=order.lookback_hours)
            return SweepWindow(since=since, from_watermark=False, notes=notes)
        return SweepWindow(since=mark - CLOCK_SKEW, from_watermark=True, notes=notes)

    @activity.defn(name="sweep_page")
    async def page(self, order: SweepPageOrder) -> SweepPage:
        tenant = self._ehr.tenant(order.tenant)
        cursor = order.cursor
        types = (
            [] if tenant.capabilities.drops_identifiers else sorted(tenant.capabilities.writable)
        )
        if cursor.phase == "scan" and cursor.type_index < len(types):
            return await self._scan_page(tenant, order, types[cursor.type_index])
        if cursor.phase != "done":
            page = await self._writes_page(tenant, order)
            if page.cursor.phase == "done":
                await asyncio.to_thread(self._mark, tenant.id, order)
            return page
        return SweepPage(findings=[], cursor=cursor)

    def _mark(self, tenant: str, order: SweepPageOrder) -> None:
        """Everything since ``order.since`` is examined: the watermark moves to the sweep's start,
        unless the sweep started later than the watermark (``--since``), which leaves a gap."""
        mark = self._records.examined_until(tenant)
        if mark is None or order.since <= mark:
            self._records.mark_examined(tenant, order.started)

    async def _scan_page(self, tenant: Tenant, order: SweepPageOrder, rtype: str) -> SweepPage:
        cursor = order.cursor
        parameter = "_tag" if rtype in TAGGED_TYPES else "identifier"
        since = quote(order.since.isoformat(timespec="seconds"), safe="")
        path = cursor.path or (
            f"{rtype}?{parameter}={quote(COMMAND_IDENTIFIER_SYSTEM, safe='')}%7C"
            f"&_lastUpdated=ge{since}&_count={tenant.reconcile.sweep_page_size}"
        )
        response = await self._ehr.send(tenant, "GET", path, order.request_id)
        if response.status_code != 200:
            raise self._ehr.failure(response, f"sweep search {rtype}")
        bundle = json_body(response) or {}
        entries = bundle.get("entry")
        scanned = [
            found
            for entry in (entries if isinstance(entries, list) else [])
            if isinstance(entry, dict)
            and (found := scanned_resource(entry.get("resource"), tenant.id, rtype))
        ]
        records = await self._records_of(tenant.id, {s.command for s in scanned})
        refs = {s.reference for s in scanned} | {r.resource for r in records.values() if r.resource}
        withdrawn = await asyncio.to_thread(self._records.withdrawn, tenant.id, refs)
        judgement = judge(tenant.id, scanned, records, withdrawn)
        await asyncio.to_thread(self._records.saw, tenant.id, judgement.seen, order.started)
        findings = list(judgement.findings)
        for candidate in judgement.changed:
            activity.heartbeat(candidate.command)
            findings += await missing_or_drift(self._ehr, tenant, candidate, order.request_id)
        next_path = self._ehr.next_page(bundle, tenant)
        if next_path:
            after = cursor.model_copy(update={"path": next_path})
        else:
            after = SweepCursor(type_index=cursor.type_index + 1)
        return SweepPage(
            findings=findings,
            cursor=after,
            resources_scanned=len(scanned),
            writes_checked=len(records),
        )

    async def _writes_page(self, tenant: Tenant, order: SweepPageOrder) -> SweepPage:
        """Writes in the chart, moved in the window, whose resource no page of this sweep showed:
        each read directly (gone, entered-in-error, or changed)."""
        records = await asyncio.to_thread(
            self._records.unseen_in_chart,
            tenant.id,
            order.since,
            order.started,
            order.cursor.after,
            WRITES_PER_PAGE,
        )
        refs = [r.resource for r in records if r.resource]
        withdrawn = await asyncio.to_thread(self._records.withdrawn, tenant.id, refs)
        findings: list[Finding] = []
        for record in records:
            if not record.resource or record.resource in withdrawn:
                continue  # withdrawn on purpose (a saga's compensation, a finding's remedy)
            activity.heartbeat(record.command)
            findings += await missing_or_drift(self._ehr, tenant, record, order.request_id)
        if len(records) < WRITES_PER_PAGE:
            after = SweepCursor(phase="done")
        else:
            after = SweepCursor(phase="writes", after=records[-1].command)
        return SweepPage(findings=findings, cursor=after, writes_checked=len(records))

    async def _records_of(self, tenant: str, commands: set[str]) -> dict[str, WriteRecord]:
        """The records of these commands; a command with none may be a write from before the
        records were kept, which Temporal may still know."""
        records = await asyncio.to_thread(self._records.of_commands, tenant, commands)
        unknown = commands - records.keys()
        if unknown:
            older = await records_from_temporal(self._temporal, unknown)
            records |= older
        return records


def scanned_resource(resource: object, tenant: str, rtype: str) -> ScannedResource | None:
    """One of ours, from an entry of the scan's search; None for anything else. Every value is
    the EHR's, and an EHR user can write an identifier: a command identifier counts only when it
    is one of this tenant's (``{tenant}:{token}``, adapters/ids.py) and the resource only when it
    is of the type searched, with a FHIR id. (Another tenant's prefix, a patient's name as a
    "key": none of it goes further.)"""
    if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
        return None
    resource_id = id_of(resource)
    commands = identifier_values(resource, COMMAND_IDENTIFIER_SYSTEM)
    ours = [c for c in commands if is_command_of(tenant, c)]
    if not ours or resource_id is None:
        return None
    return ScannedResource(
        reference=f"{rtype}/{resource_id}",
        version=version_of(resource),
        command=ours[0],
        withdrawn=is_withdrawn(resource),
    )
