"""The public contract of reconciliation: a sweep's request and report, and its findings."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from adapters.findings import Finding as Finding  # re-exported
from adapters.findings import FindingKind as FindingKind  # re-exported
from adapters.ids import finding_workflow_id as finding_workflow_id  # re-exported
from adapters.ids import legacy_finding_workflow_id as legacy_finding_workflow_id  # re-exported
from adapters.ids import sweep_schedule_id as sweep_schedule_id  # re-exported
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
