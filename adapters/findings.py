"""What a reconciliation sweep finds: a difference between the EHR and what our writes say; and
where a sweep is (its cursor).

Made by the activities that compare the two (activities/sweep_judge.py,
activities/sweep_reads.py) and part of the public contract of reconciliation
(workflows/reconcile_contract.py re-exports them), so they live below both: neither the contract
nor the activities import the other.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field


class FindingKind(StrEnum):
    DUPLICATE = "duplicate"  # more than one resource in the chart for one command
    ORPHAN = "orphan"  # our identifier, but no write that ended in the chart
    DRIFT = "drift"  # the content differs from what we verified
    MISSING = "missing"  # verified, now gone or entered-in-error


class Finding(BaseModel):
    kind: FindingKind
    tenant: str
    command: str
    write_id: str
    resources: list[str]
    keep: str | None = Field(default=None, description="duplicates: the copy the write verified")
    detail: str
    auto_remediate: bool = Field(
        default=False, description="tenant policy: withdraw extra copies without asking"
    )
    evidence: list[str] = Field(
        default_factory=list,
        description="what the sweep saw (references, versions): the finding's identity, so the "
        "same problem seen again is the same finding and its return after a decision a new one",
    )
    write_exists: bool = Field(
        default=True,
        description="False: an orphan whose command no write of ours has; its key was written "
        "in the EHR by someone, so the reason does not show it",
    )

    @property
    def reason(self) -> str:
        """What the review queue says: the kind, the detail and the write, where one exists."""
        write = f"write {self.write_id}" if self.write_exists else "no write of ours"
        return f"{self.kind.value}: {self.detail} ({write})"


class SweepCursor(BaseModel):
    """Where a sweep is: scanning the ``type_index``-th resource type the tenant lets us write
    (``path``: its next page; None: its first), then reading the writes in the chart that no page
    showed (``after``: the last command read), then done."""

    phase: Literal["scan", "writes", "done"] = "scan"
    type_index: int = 0
    path: str | None = None
    after: str = ""
