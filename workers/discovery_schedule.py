"""The per-tenant Temporal Schedule that re-runs capability discovery (TenantDiscovery)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from workflows.tenant_discovery import TenantDiscovery, schedule_id_for


def discovery_schedule(tenant: str, task_queue: str, every: timedelta) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            TenantDiscovery.run,
            tenant,
            id=f"wb-discovery:{tenant}:run",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def schedule_discovery(client: Client, tenant: str, task_queue: str, every: timedelta) -> str:
    """Create the tenant's discovery Schedule, or replace its spec if it exists; returns its id."""
    schedule_id = schedule_id_for(tenant)
    schedule = discovery_schedule(tenant, task_queue, every)
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)
    return schedule_id
