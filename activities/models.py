"""Inputs and results of the activities: small models recorded in workflow history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from adapters.callers import Expected
from adapters.fhir_r4 import CreateRequest, DedupStrategy, UpdateRequest
from adapters.findings import Finding as Finding  # re-exported: activities' results
from adapters.findings import FindingKind as FindingKind  # re-exported: activities' results
from adapters.findings import SweepCursor as SweepCursor  # re-exported: activities' orders
from adapters.policy import AuthorizationRecord
from adapters.tenants import Interaction


class CommandInput(BaseModel):
    """What the pure steps need of a command (the workflow builds it from its WriteCommand)."""

    tenant: str
    resource: dict[str, Any]
    command_identifier: str
    interaction: Interaction = Interaction.CREATE
    target: str | None = None
    requested_by: str
    on_behalf_of: str | None = None
    requested_at: datetime | None = Field(
        default=None, description="workflow time: clinical times are judged against it"
    )
    role: str | None = None
    purpose: str | None = None
    credential: str | None = Field(default=None, description="the command's (adapters/callers)")
    caller: Expected | None = Field(
        default=None, description="what the credential must prove (None: nothing to prove)"
    )


class ValidatedWrite(BaseModel):
    tenant: str
    vendor: str
    resource_type: str
    ehr_timeout_seconds: float
    search_lag_seconds: float = 0.0
    quiet_period_seconds: float = Field(
        default=0.0, description="after an unanswered create: searches find nothing this long"
    )
    resend_after_quiet: bool = Field(
        default=True, description="False: an unanswered create is never re-sent automatically"
    )
    searchable: bool = Field(
        default=True, description="False: the EHR's search may not show this type for days"
    )
    withdrawal: dict[str, Any] | None = Field(
        default=None,
        description="how this tenant withdraws an extra copy of this type (None: it cannot)",
    )
    reconcile_after_seconds: float = 0.0
    adapter_version: str = Field(default="1", description="the tenant's pin when validated")


class WritePlan(BaseModel):
    """What the map step decided to send: exactly one of the two."""

    create: CreateRequest | None = None
    update: UpdateRequest | None = None


class Refusal(BaseModel):
    """A step's decided failure, as data: its class in the taxonomy and its PHI-free reason."""

    error_class: str
    reason: str


class PreparedWrite(BaseModel):
    """validate, map and authorize in one step (CommandSteps.prepare): what validation found and,
    unless a later step refused the write (``refused``), the plan and the policy's decision."""

    validated: ValidatedWrite
    plan: WritePlan | None = None
    authorization: AuthorizationRecord | None = None
    refused: Refusal | None = None


class EhrWrite(BaseModel):
    tenant: str
    request_id: str = Field(description="correlation id sent as X-Request-Id (PHI-free)")
    request: CreateRequest
    send_by: datetime | None = Field(
        default=None,
        description="no request of this attempt is sent after this instant, and each one is "
        "given only the time left until it (activities/deadline.py)",
    )
    confirm: bool = Field(
        default=False,
        description="once the create is acknowledged, also read it back and count its copies in "
        "the same attempt (the workflow asks only when the tenant's search can show them at once)",
    )


class EhrLocate(BaseModel):
    """Find the resource a create may have made (ambiguous outcome, or a person asks)."""

    tenant: str
    request_id: str
    request: CreateRequest


class EhrUpdate(BaseModel):
    tenant: str
    request_id: str
    request: UpdateRequest
    send_by: datetime | None = None
    base_version: str
    override: bool = Field(default=False, description="write ours over a newer EHR version")


class EhrWithdraw(BaseModel):
    """Withdraw a resource we wrote (saga compensation): set ``withdrawal`` on its current version.
    ``written`` holds what those elements were when we wrote it: a person having changed them
    since is a conflict, not something to overwrite."""

    tenant: str
    request_id: str
    target: str = Field(description="e.g. 'ServiceRequest/123'")
    withdrawal: dict[str, Any]
    written: dict[str, Any]
    extra_copy_of: str | None = Field(
        default=None,
        description="a reconciliation finding's withdrawal of an extra copy: the command "
        "identifier the target must carry, as must ``keep``, the copy that stays (live)",
    )
    keep: str | None = None
    by_tenant_policy: bool = Field(
        default=False,
        description="asked by the tenant's auto-remediation: the tenant's settings (as the worker "
        "reads them, not as the finding says) must allow it",
    )


class WriteReceipt(BaseModel):
    """The EHR's acknowledgement of a write (or of the resource it already had)."""

    resource_type: str
    id: str
    version: str | None
    created: bool = Field(description="False when the EHR already held this command's resource")
    dedup: DedupStrategy | None = None
    status_code: int
    sent: dict[str, Any] | None = Field(
        default=None,
        description="what read-back must find when it is not the planned body: for updates the "
        "body actually written (after a merge); for a reading the EHR already held, that reading",
    )
    confirmation: Confirmation | None = Field(
        default=None,
        description="read-back and copy count made in the attempt itself (EhrWrite.confirm); the "
        "workflow takes it off before keeping the receipt",
    )

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"


class EhrVerify(BaseModel):
    tenant: str
    request_id: str
    receipt: WriteReceipt
    expected: dict[str, Any] = Field(description="what read-back must find")


class Verification(BaseModel):
    found: bool
    version: str | None = None
    last_updated: str | None = None
    differences: list[str] = Field(default_factory=list, description="field paths, no values")
    stored: dict[str, Any] | None = Field(
        default=None, description="the resource as read back, when it differs from what we sent"
    )

    @property
    def matches(self) -> bool:
        return self.found and not self.differences


class EhrCopies(BaseModel):
    """Count the live copies of a create in the EHR (the one-copy check before ``verified``)."""

    tenant: str
    request_id: str
    request: CreateRequest


class Copies(BaseModel):
    """The live (not withdrawn) resources a complete search found for one command: references
    and versions only, oldest first."""

    references: list[str] = Field(default_factory=list)
    versions: dict[str, str | None] = Field(default_factory=dict)


class Confirmation(BaseModel):
    """A create's read-back and its copies, made right after the EHR acknowledged it, in the same
    attempt: what the verify and copies steps would have found, two dispatches and (when the
    search shows the stored copy as sent) one EHR request sooner."""

    verification: Verification
    copies: Copies


class SagaStepInput(BaseModel):
    name: str
    resource_type: str
    depends_on: list[str] = Field(default_factory=list)
    optional: bool = False


class SagaPlanInput(BaseModel):
    tenant: str
    steps: list[SagaStepInput]
    credential: str | None = None
    caller: Expected | None = Field(
        default=None, description="what the saga's credential must prove (adapters/callers.py)"
    )


class DecisionInput(BaseModel):
    """A person's decision to prove before it is acted on (adapters/callers.py)."""

    tenant: str
    credential: str | None
    caller: Expected


class DecisionProof(BaseModel):
    """``refused``: why the decision is not taken (None: proved); ``jti``: the credential's id,
    which the workflow takes once only (None: a tenant that takes unauthenticated decisions)."""

    refused: str | None = None
    jti: str | None = None


class SagaPlan(BaseModel):
    """In which order a saga writes its steps, and how each can be withdrawn (None: it cannot)."""

    vendor: str
    order: list[str]
    withdrawal: dict[str, dict[str, Any] | None]
    skipped: list[str] = Field(
        default_factory=list, description="optional steps the tenant does not accept"
    )


class ScannedResource(BaseModel):
    """One resource of ours found by a sweep (references and codes only, no clinical content)."""

    reference: str
    version: str | None
    command: str = Field(description="the command identifier value: '{tenant}:{key}'")
    withdrawn: bool


class SweepWindowOrder(BaseModel):
    tenant: str
    since: datetime | None = Field(description="asked for; else from the watermark")
    now: datetime
    lookback_hours: float


class SweepWindow(BaseModel):
    since: datetime
    from_watermark: bool
    notes: list[str] = Field(default_factory=list, description="checks this tenant cannot have")


class SweepPageOrder(BaseModel):
    tenant: str
    request_id: str
    since: datetime = Field(description="changes since then are examined")
    started: datetime = Field(description="the sweep's start: the watermark once it is done")
    cursor: SweepCursor


class SweepPage(BaseModel):
    """One page's findings (never the page itself) and where the sweep goes next."""

    findings: list[Finding]
    cursor: SweepCursor
    resources_scanned: int = 0
    writes_checked: int = 0


class SweepSettings(BaseModel):
    lookback_hours: float
    auto_remediate_duplicates: bool


WriteReceipt.model_rebuild()  # its confirmation is defined after it
