"""Driving ClinicalSaga in workflow tests: commands, decisions, what the sandbox holds, and what a
person does by hand in the EHR itself (not through our API: on a create-only tenant too)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from temporalio.service import RPCError

from support.audit import current_resources_for_command
from support.sandbox_process import SandboxProcess
from workers.client import WritebackClient, WriteNotFound
from workflows.contract import Resolution, ResolutionAction, Urgency, WriteStatus
from workflows.saga_contract import SagaCommand, SagaStatus, SagaStep, SagaStepStatus

REFUSE_NOTIFY = {"kind": "status", "status": 422, "method": "POST", "type": "Communication"}


def refuse_withdrawal(resource_type: str) -> dict[str, Any]:
    """The EHR refuses (403) the next status update of ``resource_type``: a failed withdrawal."""
    return {"kind": "status", "status": 403, "method": "PUT", "type": resource_type}


def saga(
    tenant: str,
    key: str,
    steps: list[SagaStep],
    kind: str = "referral",
    urgency: Urgency = Urgency.ROUTINE,
) -> SagaCommand:
    return SagaCommand(
        tenant=tenant,
        idempotency_key=key,
        kind=kind,
        steps=steps,
        requested_by="referrals-svc",
        on_behalf_of="Practitioner/dr-synthetic",
        urgency=urgency,
    )


def decision(action: ResolutionAction, reason: str | None = None) -> Resolution:
    return Resolution(action=action, by="op-7", reason=reason or f"test {action.value}")


def stored(ehr: SandboxProcess, command: SagaCommand, step: str) -> list[dict[str, Any]]:
    """What the sandbox's own database holds for one step (not through its HTTP API)."""
    identifier = f"{command.tenant}:{command.step_key(step)}"
    return current_resources_for_command(ehr.db, command.tenant, identifier)


def step_of(status: SagaStatus, name: str) -> SagaStepStatus:
    return next(step for step in status.steps if step.name == name)


async def settled(client: WritebackClient, workflow_id: str, within: float = 60.0) -> WriteStatus:
    """Poll (real time) until the write or saga is terminal or waits for a person."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            status = await client.status(workflow_id)
            if status.state.is_settled:
                return status
        except (WriteNotFound, RPCError):  # not started yet, or a query that timed out
            pass
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{workflow_id} did not settle within {within} s")
        await asyncio.sleep(0.1)


async def abandon_if_waiting(client: WritebackClient, write_id: str) -> WriteStatus:
    """A step's own write that waits for a person (its read-back differed, its attempts went
    unanswered) holds its saga until someone decides: here, a person abandons it, as they would
    to let the saga take the unit back out of the chart."""
    status = await settled(client, write_id)
    if status.state.is_waiting_for_human:
        reason = "part of a saga: let the saga withdraw it"
        status = await client.resolve(
            write_id, decision(ResolutionAction.ABANDON, reason), f"abandon-{write_id}"
        )
    return status


async def read(http: httpx.AsyncClient, tenant: str, reference: str) -> dict[str, Any] | None:
    """The resource as the EHR's API shows it now (None: gone)."""
    response = await http.get(f"/fhir/{tenant}/{reference}")
    if response.status_code in (404, 410):
        return None
    assert response.status_code == 200, response.text
    return dict(response.json())


@asynccontextmanager
async def in_the_ehr_itself(http: httpx.AsyncClient, tenant: str) -> AsyncIterator[None]:
    """A person working in the EHR's own user interface, which can change what a create-only
    vendor API cannot: the sandbox tenant takes updates meanwhile."""
    before = (await http.get(f"/_admin/tenants/{tenant}")).json()["personality"]
    await http.post(f"/_admin/tenants/{tenant}", json={"personality": "r4"})
    try:
        yield
    finally:
        await http.post(f"/_admin/tenants/{tenant}", json={"personality": before})


async def changed_by_hand(
    http: httpx.AsyncClient, tenant: str, reference: str, **elements: Any
) -> None:
    """A clinician sets ``elements`` on the current version (e.g. status='entered-in-error')."""
    async with in_the_ehr_itself(http, tenant):
        current = await read(http, tenant, reference)
        assert current is not None, reference
        body = {k: v for k, v in current.items() if k != "meta"} | elements
        response = await http.put(f"/fhir/{tenant}/{reference}", json=body)
        assert response.status_code in (200, 201), response.text


async def deleted_by_hand(http: httpx.AsyncClient, tenant: str, reference: str) -> None:
    async with in_the_ehr_itself(http, tenant):
        response = await http.delete(f"/fhir/{tenant}/{reference}")
        assert response.status_code in (200, 204), response.text
