"""Following writes and deciding on them: ``GET /writes/{id}`` (what ``writeback status --json``
shows), ``GET /review`` (the exception queue) and ``POST /writes/{id}/$resolve`` (a person's
decision; the operator scope only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.ids import content_key, tenant_of_workflow
from workers.api.auth import Principal
from workers.api.fhir_body import read_json_body
from workers.api.idempotency import header_key
from workers.api.outcomes import ApiError, OperationOutcome, not_found, validation_issues
from workers.api.state import Caller, api_state
from workflows.contract import Reference, Resolution, ResolutionAction, WriteStatus

router = APIRouter(tags=["writes"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OperationOutcome, "description": what}
    for status, what in {
        401: "no valid bearer token",
        403: "scope or tenant not allowed",
        404: "no such write",
        429: "rate limit (Retry-After)",
    }.items()
}


class ReviewEntry(BaseModel):
    """One write waiting for a person (search attributes and the write's PHI-free reason)."""

    workflow_id: str
    state: str
    tenant: str
    vendor: str | None
    error_class: str | None
    urgency: str | None
    waiting_since: datetime | None
    reason: str | None


class ReviewQueue(BaseModel):
    entries: list[ReviewEntry]


class ResolveRequest(BaseModel):
    """A person's decision. Who decides is the token's client (the decision's ``by``)."""

    model_config = ConfigDict(extra="forbid")

    action: ResolutionAction
    reason: str = Field(min_length=1, max_length=500)
    reference: Reference = Field(default=None, description="for confirm: e.g. Observation/123")


_DECISION_FIELDS = frozenset(ResolveRequest.model_fields)


def tenant_of(principal: Principal, workflow_id: str) -> str:
    """The tenant of a write's id, which the client must serve (404: not one of ours)."""
    tenant = tenant_of_workflow(workflow_id)
    if tenant is None:
        raise not_found(f"no write {workflow_id}")
    principal.require_tenant(tenant)
    return tenant


@router.get("/writes/{workflow_id}", response_model=WriteStatus, responses=_ERRORS)
async def write_status(workflow_id: str, request: Request, principal: Caller) -> WriteStatus:
    """State, reason, transitions and EHR exchanges of one write (any client of its tenant)."""
    state = api_state(request)
    tenant_of(principal, workflow_id)
    return await state.writeback.status(workflow_id)


@router.get("/review", response_model=ReviewQueue, responses=_ERRORS)
async def review(
    request: Request,
    principal: Caller,
    tenant: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")] = None,
    error_class: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
) -> ReviewQueue:
    """Writes waiting for a person, oldest first (the operator scope; the client's tenants)."""
    principal.require_operator()
    state = api_state(request)
    if tenant is not None:
        principal.require_tenant(tenant)
        tenants: list[str | None] = [tenant]
    else:
        allowed = principal.tenant_filter()
        tenants = [None] if allowed is None else list(allowed)
    entries = []
    for one in tenants:
        for entry in await state.writeback.waiting(tenant=one, error_class=error_class):
            entries.append(ReviewEntry(**entry.__dict__))
    entries.sort(key=lambda e: (e.waiting_since is None, e.waiting_since or datetime.min))
    return ReviewQueue(entries=entries)


@router.post(
    "/writes/{workflow_id}/$resolve",
    response_model=WriteStatus,
    responses={**_ERRORS, 409: {"model": OperationOutcome, "description": "not waiting"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ResolveRequest.model_json_schema()}},
        }
    },
)
async def resolve(workflow_id: str, request: Request, principal: Caller) -> WriteStatus:
    """A person's decision on a waiting write (the operator scope). ``by`` is the token's client;
    ``Idempotency-Key`` (else the decision's content) makes a resent decision a no-op."""
    principal.require_operator()
    state = api_state(request)
    tenant = tenant_of(principal, workflow_id)
    body = await read_json_body(request, 16 * 1024, "decision")
    try:
        decision = ResolveRequest.model_validate(body)
        resolution = Resolution(
            action=decision.action,
            by=principal.client_id,
            reason=decision.reason,
            reference=decision.reference,
        )
    except ValidationError as exc:
        errors = exc.errors(include_input=False, include_url=False)
        issues = validation_issues(errors, "decision", _DECISION_FIELDS)
        raise ApiError(400, "invalid", "invalid decision", issues=issues) from None
    decision_id = header_key(request) or content_key(
        state.keys.id_secret(tenant),
        tenant,
        {"workflow": workflow_id, **resolution.model_dump(mode="json", exclude={"credential"})},
    )
    return await state.writeback.resolve(workflow_id, resolution, decision_id)
