"""What a sweep makes of what it found: each resource of ours on a page against the record of the
write that made it (activities/write_records.py), and a write's resource read directly.

- no record, or a write that ended out of the chart, and a live copy: ``orphan``;
- a live copy other than the one the write verified: ``duplicate`` (keep the verified one);
- the verified copy entered-in-error or gone, unless we withdrew it on purpose: ``missing``;
- the verified copy at another version whose content differs from ours (vread): ``drift``.

A finding's ``evidence`` names what it saw (references and versions): the same problem seen again
is the same finding; the problem coming back after a person settled it is a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from activities.ehr_client import EhrClient
from activities.fhir_http import version_of
from activities.models import Finding, FindingKind, ScannedResource
from activities.write_records import WriteRecord
from adapters.compensation import is_withdrawn
from adapters.fhir_r4 import (
    COMMAND_IDENTIFIER_SYSTEM,
    NARROWING_PARAMETERS,
    CreateRequest,
    DedupStrategy,
    dedup_strategy,
    differences,
)
from adapters.fingerprint import fingerprint
from adapters.ids import write_id_of
from adapters.tenants import Tenant


@dataclass
class Judgement:
    findings: list[Finding] = field(default_factory=list)
    changed: list[WriteRecord] = field(default_factory=list)  # read directly: drift?
    seen: set[str] = field(default_factory=set)  # commands whose verified copy was on the page


def judge(
    tenant: str,
    scanned: list[ScannedResource],
    records: dict[str, WriteRecord],
    withdrawn_on_purpose: set[str],
) -> Judgement:
    out = Judgement()
    for copy in scanned:
        record = records.get(copy.command)
        if record is not None and record.undecided:
            continue  # the write itself will still decide, and looks for copies as it does
        if record is None or not record.in_chart:
            if not copy.withdrawn and copy.reference not in withdrawn_on_purpose:
                why = "no write exists" if record is None else f"its write ended {record.state}"
                out.findings.append(
                    _finding(
                        tenant,
                        copy.command,
                        FindingKind.ORPHAN,
                        [copy.reference],
                        f"{copy.reference} carries our identifier but {why}",
                        evidence=[f"{copy.reference}@{copy.version}"],
                        write_exists=record is not None,
                    )
                )
            continue
        if record.resource is None:
            continue
        if copy.reference != record.resource:
            if not copy.withdrawn:
                out.findings.append(
                    _finding(
                        tenant,
                        copy.command,
                        FindingKind.DUPLICATE,
                        [record.resource, copy.reference],
                        f"another resource in the chart for one write: {copy.reference} "
                        f"besides {record.resource}",
                        evidence=[record.resource, copy.reference],
                        keep=record.resource,
                    )
                )
            continue
        out.seen.add(copy.command)
        if copy.withdrawn:
            if copy.reference not in withdrawn_on_purpose:
                out.findings.append(missing(tenant, record, "entered-in-error", copy.version))
        elif record.version is not None and copy.version != record.version:
            out.changed.append(record)
    return out


def missing(tenant: str, record: WriteRecord, what: str, version: str | None) -> Finding:
    reference = str(record.resource)
    return _finding(
        tenant,
        record.command,
        FindingKind.MISSING,
        [reference],
        f"{reference} was verified, and is now {what}",
        evidence=[f"{reference}@{version}", what],
    )


def keeps_no_identifier(tenant: Tenant) -> bool:
    """A tenant whose EHR keeps no identifier of ours (it drops them, or we write through a
    vendor API): our copies are known only by content (adapters/fingerprint.py)."""
    return dedup_strategy(tenant) is DedupStrategy.FINGERPRINT or not tenant.adapter().writes_fhir


async def missing_or_drift(
    ehr: EhrClient, tenant: Tenant, record: WriteRecord, request_id: str
) -> list[Finding]:
    """Read the write's resource: gone or entered-in-error is ``missing``; a version other than
    the one we verified whose content differs from it (vread) is ``drift``. Where the EHR keeps
    no identifier of ours, other live resources with our copy's content are ``duplicate``."""
    reference = str(record.resource)
    current = await ehr.read(tenant, reference, request_id)
    if current is None:
        return [missing(tenant.id, record, "gone", None)]
    version = version_of(current)
    if is_withdrawn(current):
        return [missing(tenant.id, record, "entered-in-error", version)]
    ours = current
    findings = []
    if version != record.version and record.version is not None:
        verified = None
        if tenant.capabilities.vread:
            verified = await ehr.vread(tenant, reference, record.version, request_id)
        changed = differences(verified, current) if verified else ["(version history unavailable)"]
        if changed:
            findings.append(_drift(tenant.id, record, reference, version, changed))
        ours = verified or current
    if keeps_no_identifier(tenant):
        findings += await _copies_by_content(ehr, tenant, record, ours, request_id)
    return findings


async def _copies_by_content(
    ehr: EhrClient, tenant: Tenant, record: WriteRecord, ours: dict[str, Any], request_id: str
) -> list[Finding]:
    """Other live resources of the patient with our copy's content fingerprint: the search the
    write itself makes before a create on such a tenant (CreateRequest.search_query)."""
    reference = str(record.resource)
    subject = (ours.get("subject") or {}).get("reference")
    if not isinstance(subject, str):
        return []
    probe = CreateRequest(
        resource_type=reference.split("/")[0],
        body=ours,
        identifier_system=COMMAND_IDENTIFIER_SYSTEM,
        identifier_value=record.command,
        dedup=DedupStrategy.FINGERPRINT,
        fingerprint=fingerprint(ours),
        patient=subject,
    )
    found = await ehr.search(
        tenant, probe.search_query(), request_id, "sweep: copies by content", NARROWING_PARAMETERS
    )
    others = sorted(
        f"{probe.resource_type}/{r['id']}"
        for r in found
        if r.get("id") and not is_withdrawn(r) and probe.is_ours(r)
    )
    others = [other for other in others if other != reference]
    if not others:
        return []
    return [
        _finding(
            tenant.id,
            record.command,
            FindingKind.DUPLICATE,
            [reference, *others],
            f"{len(others)} other resource(s) with the same content as {reference} "
            f"(by fingerprint: the EHR keeps no identifier of ours): {', '.join(others[:10])}",
            evidence=[reference, *others],
            keep=reference,
        )
    ]


def _drift(
    tenant: str, record: WriteRecord, reference: str, version: str | None, changed: list[str]
) -> Finding:
    return _finding(
        tenant,
        record.command,
        FindingKind.DRIFT,
        [reference],
        f"{reference} changed since version {record.version} we verified (now {version}) at: "
        + ", ".join(changed[:10]),
        evidence=[f"{reference}@{version}"],
    )


def _finding(
    tenant: str,
    command: str,
    kind: FindingKind,
    resources: list[str],
    detail: str,
    evidence: list[str],
    keep: str | None = None,
    write_exists: bool = True,
) -> Finding:
    return Finding(
        kind=kind,
        tenant=tenant,
        command=command,
        write_id=write_id_of(command),
        resources=resources,
        keep=keep,
        detail=detail,
        evidence=evidence,
        write_exists=write_exists,
    )
