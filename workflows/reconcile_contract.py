"""The public contract of reconciliation: a sweep's request, progress and report, and findings."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from pydantic import BaseModel, Field

from adapters.findings import Finding as Finding  # re-exported
from adapters.findings import FindingKind as FindingKind  # re-exported
from adapters.findings import SweepCursor as SweepCursor  # re-exported
from adapters.ids import finding_workflow_id as finding_workflow_id  # re-exported
from adapters.ids import sweep_schedule_id as sweep_schedule_id  # re-exported
from workflows.contract import TOKEN_PATTERN

#: Findings a report lists in full; the rest are counted (``findings_by_kind``).
LISTED_FINDINGS = 100


class SweepProgress(BaseModel):
    """Where a sweep is, carried over continue-as-new; the ``progress`` query answers it."""

    since: datetime
    started: datetime
    from_watermark: bool = False
    cursor: SweepCursor = Field(default_factory=SweepCursor)
    pages: int = 0
    resources_scanned: int = 0
    writes_checked: int = 0
    findings_by_kind: dict[str, int] = Field(default_factory=dict)
    findings: list[Finding] = Field(default_factory=list, description="the first ones, listed")
    raised: list[str] = Field(default_factory=list, description="the first ones, listed")
    raised_count: int = 0
    notes: list[str] = Field(default_factory=list)

    def count(self, finding: Finding) -> None:
        kinds = Counter(self.findings_by_kind)
        kinds[finding.kind.value] += 1
        self.findings_by_kind = dict(kinds)
        if len(self.findings) < LISTED_FINDINGS:
            self.findings.append(finding)


class SweepRequest(BaseModel):
    tenant: str = Field(pattern=TOKEN_PATTERN)
    since: datetime | None = Field(
        default=None,
        description="default: where the tenant's last complete sweep started (less an overlap), "
        "else now minus the tenant's sweep_lookback_hours",
    )
    progress: SweepProgress | None = Field(
        default=None, description="set by the sweep itself when it continues as new"
    )


class SweepReport(BaseModel):
    tenant: str
    since: datetime
    until: datetime
    from_watermark: bool
    pages: int
    resources_scanned: int
    writes_checked: int
    findings_by_kind: dict[str, int]
    findings: list[Finding] = Field(description=f"the first {LISTED_FINDINGS}")
    raised_count: int = Field(description="findings newly put in the review queue")
    raised: list[str] = Field(
        default_factory=list, description=f"their workflow ids (the first {LISTED_FINDINGS})"
    )
    notes: list[str] = Field(default_factory=list)

    @property
    def finding_count(self) -> int:
        return sum(self.findings_by_kind.values())
