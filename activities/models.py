"""Inputs and results of the activities: small models recorded in workflow history."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from adapters.fhir_r4 import CreateRequest, DedupStrategy, UpdateRequest
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
    role: str | None = None
    purpose: str | None = None


class ValidatedWrite(BaseModel):
    tenant: str
    vendor: str
    resource_type: str
    ehr_timeout_seconds: float
    search_lag_seconds: float = 0.0


class WritePlan(BaseModel):
    """What the map step decided to send: exactly one of the two."""

    create: CreateRequest | None = None
    update: UpdateRequest | None = None


class EhrWrite(BaseModel):
    tenant: str
    request_id: str = Field(description="correlation id sent as X-Request-Id (PHI-free)")
    request: CreateRequest


class EhrLocate(BaseModel):
    """Find the resource a create may have made (ambiguous outcome, or a person asks)."""

    tenant: str
    request_id: str
    request: CreateRequest


class EhrUpdate(BaseModel):
    tenant: str
    request_id: str
    request: UpdateRequest
    base_version: str
    override: bool = Field(default=False, description="write ours over a newer EHR version")


class WriteReceipt(BaseModel):
    """The EHR's acknowledgement of a write (or of the resource it already had)."""

    resource_type: str
    id: str
    version: str | None
    created: bool = Field(description="False when the EHR already held this command's resource")
    dedup: DedupStrategy | None = None
    status_code: int
    sent: dict[str, Any] | None = Field(
        default=None, description="for updates: the body actually written (after a merge)"
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
