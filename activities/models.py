"""Inputs and results of the activities: small models recorded in workflow history."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from adapters.fhir_r4 import CreateRequest, DedupStrategy


class CommandInput(BaseModel):
    """What the pure steps need of a command (the workflow builds it from its WriteCommand)."""

    tenant: str
    resource: dict[str, Any]
    command_identifier: str
    interaction: Literal["create"] = "create"
    requested_by: str
    on_behalf_of: str | None = None


class ValidatedWrite(BaseModel):
    tenant: str
    vendor: str
    resource_type: str
    ehr_timeout_seconds: float


class AuthorizationRecord(BaseModel):
    """Who asked, on whose behalf, under which scopes, and which checks ran."""

    requested_by: str
    on_behalf_of: str | None
    scopes: list[str]
    checks: list[str]
    decided_at: datetime


class EhrWrite(BaseModel):
    tenant: str
    request_id: str = Field(description="correlation id sent as X-Request-Id (PHI-free)")
    request: CreateRequest


class WriteReceipt(BaseModel):
    """The EHR's acknowledgement of a create (or of the resource it already had)."""

    resource_type: str
    id: str
    version: str | None
    created: bool = Field(description="False when the EHR already held this command's resource")
    dedup: DedupStrategy
    status_code: int
    attempt: int = Field(description="which activity attempt got the acknowledgement")

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.id}"


class EhrVerify(BaseModel):
    tenant: str
    request_id: str
    receipt: WriteReceipt
    sent: CreateRequest


class Verification(BaseModel):
    found: bool
    version: str | None = None
    last_updated: str | None = None
    differences: list[str] = Field(default_factory=list, description="field paths, no values")

    @property
    def matches(self) -> bool:
        return self.found and not self.differences
