"""The demo's saga: a lab panel (three results, then the report listing them) written as one unit
on the first demo tenant that takes it, and its steps printed as the table shows writes."""

from __future__ import annotations

import asyncio

from adapters.compensation import can_compensate
from adapters.tenants import Interaction, Tenant, TenantRegistry
from workers.client import WritebackClient
from workers.family_samples import lab_panel
from workflows.contract import WriteState
from workflows.saga_contract import SagaCommand

LAB_PANEL_TYPES = ("Observation", "DiagnosticReport")


def lab_panel_tenant(tenants: TenantRegistry) -> Tenant | None:
    """The first tenant that creates every type of the lab panel and can withdraw its results
    (a refused report then leaves nothing in the chart)."""
    tenant: Tenant
    for tenant in tenants:
        creates = all(tenant.capabilities.allows(t, Interaction.CREATE) for t in LAB_PANEL_TYPES)
        if creates and can_compensate(tenant, "Observation"):
            return tenant
    return None


async def write_lab_panel(
    client: WritebackClient, tenants: TenantRegistry, run: str, settle_seconds: float
) -> tuple[bool, list[str]]:
    """(ended as expected, lines to print): verified, or skipped where no tenant takes it."""
    tenant = lab_panel_tenant(tenants)
    if tenant is None:
        return True, ["lab panel: skipped, no tenant creates Observation and DiagnosticReport"]
    command = SagaCommand(
        tenant=tenant.id,
        idempotency_key=f"demo-{run}-lab-panel",
        kind="lab-panel",
        steps=lab_panel("demo-patient-5"),
    )
    submission = await client.submit_saga(command)
    try:
        await asyncio.wait_for(client.wait(submission.workflow_id), timeout=settle_seconds)
    except TimeoutError:
        return False, [f"{submission.workflow_id}: not settled after {settle_seconds:g}s"]
    saga = await client.saga(submission.workflow_id)
    lines = [f"{saga.workflow_id:<44} {saga.state.value:<13} {saga.reason or saga.kind}"]
    for step in saga.steps:
        state = step.state.value if step.state else "-"
        lines.append(f"  {step.name:<42} {state:<13} {step.resource or '-'}")
    return saga.state is WriteState.VERIFIED, lines
