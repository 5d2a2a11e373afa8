"""Temporal Schedules of the product: one reconciliation sweep per tenant."""

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

from adapters.tenants import Tenant, TenantRegistry
from workflows.reconcile_contract import SweepRequest, sweep_schedule_id
from workflows.reconcile_sweep import ReconcileSweep


def sweep_schedule(tenant: Tenant, task_queue: str) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            ReconcileSweep.run,
            SweepRequest(tenant=tenant.id),
            id=f"wb-sweep:{tenant.id}:scheduled",  # the schedule appends the start time
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[
                ScheduleIntervalSpec(every=timedelta(hours=tenant.reconcile.sweep_every_hours))
            ]
        ),
        # a sweep still running when the next is due: skip the next, never pile them up
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def register_sweep_schedule(client: Client, tenant: Tenant, task_queue: str) -> str:
    """Create the tenant's sweep schedule, or bring an existing one up to date."""
    schedule_id = sweep_schedule_id(tenant.id)
    schedule = sweep_schedule(tenant, task_queue)
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)
    return schedule_id


async def register_sweep_schedules(
    client: Client, tenants: TenantRegistry, task_queue: str
) -> list[str]:
    return [await register_sweep_schedule(client, tenant, task_queue) for tenant in tenants]
