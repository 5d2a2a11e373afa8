"""A tenant's reconciliation settings (``[tenant.reconcile]``, README: "Reconciliation")."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReconcileSettings(BaseModel):
    """Keep comparing what we believe with what the EHR holds (README: "Reconciliation")."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    after_hours: float = Field(
        default=0.0,
        ge=0,
        description="re-read each verified write this long after it was verified (0 = off)",
    )
    sweep_every_hours: float = Field(
        default=1.0, gt=0, description="how often the scheduled sweep runs for this tenant"
    )
    sweep_lookback_hours: float = Field(
        default=2.0,
        gt=0,
        description="window of _lastUpdated a scheduled sweep searches: the interval plus an "
        "overlap, so that each change is seen by two sweeps and the cost stays per change",
    )
    auto_remediate_duplicates: bool = Field(
        default=False,
        description="withdraw extra copies (entered-in-error) without asking a person",
    )
    sweep_page_size: int = Field(
        default=500,
        ge=1,
        le=1000,
        description="resources asked for per page of the sweep's search (the EHR may answer fewer)",
    )
    record_retention_days: int = Field(
        default=7 * 366,
        gt=0,
        description="how long the record of each settled write is kept for the sweep to compare "
        "with (activities/write_records.py); Temporal's own retention is days",
    )
