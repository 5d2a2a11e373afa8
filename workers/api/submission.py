"""Starting a write from an HTTP request, and the answer: what every route that writes shares
(``POST``/``PUT`` on /fhir, and a batch Bundle's entries: bundle_routes.py).

At the door, before anything starts: the command's input limits (workflows/input_limits.py) and
the validate step's own checks of the resource (the tenant's vendor takes its family:
adapters/vendor.py ``family_refusal``, then adapters/validation.py ``validate_resource`` with the
tenant's clinical context, as activities/command_steps.py runs them): a request the
worker would reject as invalid is answered 400 and no workflow starts. The command is signed for
the worker with the API's caller key as the authenticated client (adapters/callers.py): the
worker proves the caller as it would any other.

The answer is asynchronous (202, ``Content-Location: /writes/{id}``) unless the request asks
``Prefer: wait=N``: then the API waits (``WritebackClient.wait``, at most N s, capped) and answers
201 (an update: 200) with the EHR's ``Location`` and ``ETag`` once the write is ``verified``, else
202 with the state it is in."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi.responses import Response
from pydantic import ValidationError

from adapters.code_maps import mapped_codes
from adapters.problems import ResourceInvalid, validation_problems
from adapters.validation import clinical_context, validate_resource
from adapters.vendor import family_refusal
from workers.api.auth import Principal
from workers.api.idempotency import MEMO_FIELD, check_same_request, request_digest
from workers.api.outcomes import (
    ApiError,
    CodeableConcept,
    Coding,
    Issue,
    IssueCode,
    Severity,
    fhir_path,
    issue,
    outcome_response,
    resource_problems,
)
from workers.api.state import ApiState
from workers.client import NoWorker
from workflows.contract import Interaction, WriteCommand, WriteState, WriteStatus
from workflows.input_limits import COMMAND_FIELDS, CommandRefused, LimitExceeded, check_command

#: the code system of the ``details`` coding that names a write's state in an answer
STATE_SYSTEM = "urn:writeback:state"
#: a rejected write's error class -> the issue code it answers with
_REJECTED: dict[str | None, IssueCode] = {
    "validation": "invalid",
    "authorization": "security",
    "unsupported": "not-supported",
    "not_found": "not-found",
    "conflict": "conflict",
    "duplicate": "duplicate",
}


def build_command(
    principal: Principal,
    tenant: str,
    key: str,
    resource: dict[str, object],
    target: str | None = None,
    base_version: str | None = None,
) -> WriteCommand:
    """The command: caller and user from the token, never from the request's body."""
    try:
        return WriteCommand(
            tenant=tenant,
            idempotency_key=key,
            resource=resource,
            interaction=Interaction.UPDATE if target else Interaction.CREATE,
            target=target,
            base_version=base_version,
            requested_by=principal.client_id,
            on_behalf_of=principal.user,
        )
    except ValidationError as exc:
        problems = validation_problems(exc, "command", COMMAND_FIELDS)
        issues = [issue("invalid", p.message, [p.path]) for p in problems[:20]]
        raise ApiError(400, "invalid", "invalid command", issues=issues) from None


def check_at_the_door(state: ApiState, command: WriteCommand) -> None:
    """What the worker would refuse before writing, refused here (400/413) instead."""
    resource_type = str(command.resource.get("resourceType") or "Resource")
    try:
        check_command(command)
    except LimitExceeded as exc:
        status = 413 if exc.limit == "max_command_bytes" else 400
        raise ApiError(status, "too-long", exc.code, [fhir_path(exc.path, resource_type)]) from None
    except CommandRefused as exc:
        raise ApiError(400, "invalid", exc.code, [fhir_path(exc.path, resource_type)]) from None
    tenant = state.tenant(command.tenant)
    refusal = family_refusal(tenant.adapter(), command.resource)
    if refusal is not None:
        path = [fhir_path(refusal.path, resource_type)]
        raise ApiError(422, "not-supported", str(refusal), path)
    try:  # as the worker checks it: with the tenant's code maps applied
        resource = mapped_codes(tenant.code_maps, command.resource)
        validate_resource(resource, clinical_context(tenant, datetime.now(UTC)))
    except ResourceInvalid as exc:
        raise resource_problems(exc.problems, resource_type) from None


async def start_write(state: ApiState, command: WriteCommand) -> str:
    """Check, then start (or join) the write; 422 when its key was used for another request."""
    check_at_the_door(state, command)
    digest = request_digest(state.keys, command)
    submission = await state.writeback.submit(command, memo={MEMO_FIELD: digest})
    await check_same_request(state.writeback, state.keys, submission, digest)
    return submission.workflow_id


async def answer(state: ApiState, workflow_id: str, wait_seconds: float) -> Response:
    """202 at once; with a wait, 201/200 once verified within it, else 202 with the state."""
    status: WriteStatus | None = None
    if wait_seconds > 0:
        try:
            status = await asyncio.wait_for(state.writeback.wait(workflow_id), wait_seconds)
        except TimeoutError:
            status = await _status_or_none(state, workflow_id)
        except NoWorker:
            status = None
    headers = {"Content-Location": f"/writes/{workflow_id}"}
    if status is not None and status.state.is_in_chart and status.resource:
        tenant = state.tenant(status.tenant)
        history = f"/_history/{status.version}" if status.version else ""
        headers["Location"] = f"{tenant.base_url()}/{status.resource}{history}"
        if status.version:
            headers["ETag"] = f'W/"{status.version}"'
        created = status.interaction is Interaction.CREATE
        done = state_issue(workflow_id, status)
        return outcome_response(201 if created else 200, [done], headers)
    if status is None:
        accepted = issue(
            "informational",
            f"write {workflow_id} accepted: durable, not yet settled; follow Content-Location",
            severity="information",
            details=_state(WriteState.REQUESTED, None),
        )
        return outcome_response(202, [accepted], headers)
    return outcome_response(202, [state_issue(workflow_id, status)], headers)


async def _status_or_none(state: ApiState, workflow_id: str) -> WriteStatus | None:
    try:
        return await state.writeback.status(workflow_id)
    except NoWorker:
        return None


def _state(state: WriteState, reason: str | None) -> CodeableConcept:
    return CodeableConcept(coding=[Coding(system=STATE_SYSTEM, code=state.value)], text=reason)


def state_issue(workflow_id: str, status: WriteStatus) -> Issue:
    """One issue saying where the write is (its reason names paths and codes, never values)."""
    severity: Severity = "information"
    code: IssueCode = "informational"
    if status.state is WriteState.REJECTED:
        severity, code = "error", _REJECTED.get(status.error_class, "processing")
    elif status.state is WriteState.CONFLICT:
        severity, code = "error", "conflict"
    elif status.state.is_waiting_for_human:
        severity = "warning"
        code = "duplicate" if status.error_class == "duplicate" else "processing"
    elif status.state in (WriteState.ABANDONED, WriteState.COMPENSATED):
        severity, code = "error", "processing"
    text = f"write {workflow_id}: {status.state.value}"
    return issue(code, text, severity=severity, details=_state(status.state, status.reason))
