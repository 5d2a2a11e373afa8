"""The public contract of reconciliation: a sweep's request and report, and its findings."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from activities.models import Finding as Finding
from activities.models import FindingKind as FindingKind
from workflows.contract import TOKEN_PATTERN


class SweepRequest(BaseModel):
    tenant: str = Field(pattern=TOKEN_PATTERN)
    since: datetime | None = Field(
        default=None, description="default: now minus the tenant's sweep_lookback_hours"
    )


class SweepReport(BaseModel):
    tenant: str
    since: datetime
    until: datetime
    resources_scanned: int
    writes_checked: int
    findings: list[Finding]
    raised: list[str] = Field(
        default_factory=list, description="workflow ids of findings newly put in the review queue"
    )
    notes: list[str] = Field(default_factory=list)


def sweep_schedule_id(tenant: str) -> str:
    return f"wb-reconcile:{tenant}"


def finding_workflow_id(finding: Finding) -> str:
    """``wb-finding:{tenant}:{kind}:{key}``: one per write and kind of difference."""
    key = finding.command.split(":", 1)[-1]
    return f"wb-finding:{finding.tenant}:{finding.kind.value}:{key}"
