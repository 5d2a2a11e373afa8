"""The public contract of a clinical write: the command, its states, and what status reports.

Callers (services, the CLI, operators) only ever need this module. It is deliberately free of
FHIR library types: the resource travels as plain FHIR JSON so workflow code stays deterministic
and cheap to (de)serialise.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from adapters.callers import MAX_CREDENTIAL_CHARS
from adapters.ids import command_identifier
from adapters.ids import tenant_of_workflow as tenant_of_workflow  # re-exported
from adapters.ids import workflow_id_for as workflow_id_for  # re-exported
from adapters.policy import AuthorizationRecord as AuthorizationRecord  # re-exported
from adapters.tenants import Interaction as Interaction  # re-exported: part of the contract

#: Tenant ids and idempotency keys end up in workflow ids, which are plain text on the Temporal
#: server. They are restricted to opaque tokens so that patient data cannot ride along by accident.
TOKEN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: ``Type/id``: a FHIR id (``[A-Za-z0-9-.]{1,64}``), which may hold dots but is not only dots
#: (``Observation/.`` and ``Observation/..`` are URLs of a search, not of a resource: issue 17).
REFERENCE_PATTERN = r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$"


def _names_a_resource(reference: str | None) -> str | None:
    if reference is not None and not reference.split("/", 1)[-1].strip("."):
        raise PydanticCustomError("reference_id_only_dots", "the id is only dots")
    return reference


#: A reference to one resource, as commands and decisions name it.
Reference = Annotated[str | None, AfterValidator(_names_a_resource)]


class WriteState(StrEnum):
    """Where a write is. README.md ("States") says what each one promises."""

    REQUESTED = "requested"
    VALIDATED = "validated"
    AUTHORIZED = "authorized"
    IN_FLIGHT = "in_flight"
    ACKNOWLEDGED = "acknowledged"
    VERIFIED = "verified"
    RECONCILED = "reconciled"
    PENDING_CONFIRMATION = "pending_confirmation"
    CONFLICT = "conflict"
    MISMATCH = "mismatch"
    REJECTED = "rejected"
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    ABANDONED = "abandoned"

    @property
    def is_terminal(self) -> bool:
        """Nothing more will happen to the write in the EHR. (A ``verified`` write may still be
        re-checked later by reconciliation, which ends ``reconciled`` or raises a ``mismatch``.)"""
        return self in {
            WriteState.VERIFIED,
            WriteState.RECONCILED,
            WriteState.REJECTED,
            WriteState.COMPENSATED,
            WriteState.ABANDONED,
        }

    @property
    def is_waiting_for_human(self) -> bool:
        return self in {
            WriteState.PENDING_CONFIRMATION,
            WriteState.CONFLICT,
            WriteState.MISMATCH,
            WriteState.COMPENSATION_FAILED,
        }

    @property
    def is_in_chart(self) -> bool:
        """The EHR holds what we wrote, as far as the last read showed."""
        return self in {WriteState.VERIFIED, WriteState.RECONCILED}

    @property
    def is_settled(self) -> bool:
        """Terminal, or parked until a person acts: nothing more happens on its own."""
        return self.is_terminal or self.is_waiting_for_human


class Urgency(StrEnum):
    STAT = "stat"
    URGENT = "urgent"
    ROUTINE = "routine"


class WriteCommand(BaseModel):
    """'Write this resource into tenant T on behalf of user U', exactly once.

    For an update, ``resource`` is the whole resource as the user wants it, ``target`` the
    resource it replaces and ``base_version`` the version the user saw: a newer version in the
    EHR is merged when the changes do not overlap, and is a ``conflict`` when they do.
    """

    #: a validation error names fields and codes; its text never quotes the input (callers log)
    model_config = ConfigDict(hide_input_in_errors=True)

    tenant: str = Field(pattern=TOKEN_PATTERN)
    idempotency_key: str = Field(pattern=TOKEN_PATTERN)
    interaction: Interaction = Interaction.CREATE
    resource: dict[str, Any]
    target: Reference = Field(default=None, pattern=REFERENCE_PATTERN)
    base_version: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.\-]{1,64}$")
    requested_by: str = Field(default="cli", pattern=TOKEN_PATTERN)
    on_behalf_of: str | None = Field(default=None, max_length=256)
    role: str | None = Field(
        default=None, pattern=TOKEN_PATTERN, description="the on-behalf-of user's role code"
    )
    purpose: str | None = Field(
        default=None, pattern=TOKEN_PATTERN, description="purpose of use, e.g. TREAT"
    )
    urgency: Urgency = Urgency.ROUTINE
    reconcile: bool = Field(
        default=True,
        description="re-read the write after the tenant's reconcile delay (README: "
        "Reconciliation); a saga turns it off for its steps, which its sweep covers",
    )
    credential: str | None = Field(
        default=None,
        max_length=MAX_CREDENTIAL_CHARS,
        description="the caller's proof of who it is (adapters/callers.py): a JWS over this "
        "command, signed by requested_by's key; WritebackClient adds it given a caller key",
    )

    @field_validator("resource")
    @classmethod
    def _resource_is_an_object(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise PydanticCustomError("resource_empty", "resource is empty")
        return value

    @model_validator(mode="after")
    def _update_names_its_target(self) -> WriteCommand:
        if self.interaction is Interaction.UPDATE:
            if not (self.target and self.base_version):
                raise PydanticCustomError(
                    "update_needs_target",
                    "an update needs target (e.g. Observation/123) and base_version",
                )
            if self.target.split("/", 1)[0] != self.resource.get("resourceType"):
                raise PydanticCustomError(
                    "target_type_differs", "target and resource.resourceType differ"
                )
        elif self.target or self.base_version:
            raise PydanticCustomError(
                "target_only_for_updates", "target and base_version are only for updates"
            )
        return self

    @property
    def workflow_id(self) -> str:
        return workflow_id_for(self.tenant, self.idempotency_key)

    @property
    def command_identifier(self) -> str:
        """Value of the command identifier stamped on the created resource (see adapters)."""
        return command_identifier(self.tenant, self.idempotency_key)


class Transition(BaseModel):
    state: WriteState
    at: datetime
    detail: str | None = None


class EhrExchange(BaseModel):
    """One request/answer with the EHR, as the review queue shows it (codes, never content)."""

    step: str
    attempt: int
    at: datetime
    outcome: str


class WriteStatus(BaseModel):
    """What the product can say about one write at any moment (query ``status``)."""

    workflow_id: str
    tenant: str
    interaction: Interaction = Interaction.CREATE
    state: WriteState
    vendor: str | None = None
    resource_type: str | None = None
    resource: str | None = Field(default=None, description="e.g. 'Observation/123'")
    version: str | None = None
    attempts: int = Field(default=0, description="EHR write attempts so far")
    copies: int | None = Field(
        default=None,
        description="live resources in the EHR carrying this create's command identifier (or "
        "fingerprint) at the one-copy check; a verified create has 1, or None where the EHR's "
        "search cannot show the type (README: States)",
    )
    error_class: str | None = None
    reason: str | None = None
    waiting_since: datetime | None = None
    next_check_at: datetime | None = Field(
        default=None,
        description="while waiting: when the write re-checks the EHR by itself; while backing "
        "off between attempts: when it tries next",
    )
    transitions: list[Transition] = Field(default_factory=list)
    ehr_log: list[EhrExchange] = Field(default_factory=list)
    authorization: AuthorizationRecord | None = Field(
        default=None, description="the policy decision this write ran (or stopped) under"
    )


class WriteDetails(BaseModel):
    """Everything a reviewer needs (query ``details``): the command as submitted, the normalized
    payload sent, and the resource as the EHR last returned it when that differed from what was
    sent. Contains clinical data: it travels only inside (encrypted) payloads, never into logs or
    search attributes."""

    status: WriteStatus
    command: WriteCommand | None = Field(
        description="None when the write's start argument was not a command (status says why)"
    )
    sent: dict[str, Any] | None = None
    ehr_state: dict[str, Any] | None = None


class ResolutionAction(StrEnum):
    CONFIRM = "confirm"  # "it is in the chart": verify the (given) reference and finish
    REVERIFY = "reverify"  # read it back (or look for it) again now
    RETRY = "retry"  # send the write again (idempotently), with a fresh retry budget
    OVERRIDE = "override"  # conflict only: write ours over the EHR's newer version
    ABANDON = "abandon"  # do not write; the workflow ends `abandoned`


class Resolution(BaseModel):
    """A person's decision on a write that waits for one (workflow update ``resolve``)."""

    action: ResolutionAction
    by: str = Field(pattern=TOKEN_PATTERN, description="operator id, not a name")
    reason: str = Field(min_length=1, max_length=500)
    reference: Reference = Field(
        default=None,
        pattern=REFERENCE_PATTERN,
        description="for confirm: the resource the person found, e.g. 'Observation/123'",
    )
    credential: str | None = Field(
        default=None,
        max_length=MAX_CREDENTIAL_CHARS,
        description="the operator's proof (adapters/callers.py): a JWS over this decision and "
        "the workflow it is for, signed by by's key",
    )
