"""The per-tenant Temporal Schedule that re-runs capability discovery (TenantDiscovery)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, Schedule, ScheduleActionStartWorkflow

from adapters.ids import discovery_schedule_id, discovery_workflow_id
from workers.schedules import periodic, upsert_schedule
from workflows.tenant_discovery import TenantDiscovery


def discovery_schedule(tenant: str, task_queue: str, every: timedelta) -> Schedule:
    action = ScheduleActionStartWorkflow(
        TenantDiscovery.run, tenant, id=discovery_workflow_id(tenant, "run"), task_queue=task_queue
    )
    return periodic(action, every)


async def schedule_discovery(client: Client, tenant: str, task_queue: str, every: timedelta) -> str:
    """Create the tenant's discovery Schedule, or replace its spec if it exists; returns its id."""
    return await upsert_schedule(
        client, discovery_schedule_id(tenant), discovery_schedule(tenant, task_queue, every)
    )
