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

from adapters.ids import sweep_schedule_id, sweep_workflow_id
from adapters.tenants import Tenant, TenantRegistry
from workflows.reconcile_contract import SweepRequest
from workflows.reconcile_sweep import ReconcileSweep


def periodic(action: ScheduleActionStartWorkflow, every: timedelta) -> Schedule:
    """Start ``action`` every ``every``; a run still going when the next is due makes that one
    skip, so runs never pile up. (Its workflow id gets the start time appended.)"""
    return Schedule(
        action=action,
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


async def upsert_schedule(client: Client, schedule_id: str, schedule: Schedule) -> str:
    """Create the schedule, or bring an existing one up to date; returns its id."""
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:

        def replace(_: ScheduleUpdateInput) -> ScheduleUpdate:
            return ScheduleUpdate(schedule=schedule)

        await client.get_schedule_handle(schedule_id).update(replace)
    return schedule_id


def sweep_schedule(tenant: Tenant, task_queue: str) -> Schedule:
    action = ScheduleActionStartWorkflow(
        ReconcileSweep.run,
        SweepRequest(tenant=tenant.id),
        id=sweep_workflow_id(tenant.id, "scheduled"),
        task_queue=task_queue,
    )
    return periodic(action, timedelta(hours=tenant.reconcile.sweep_every_hours))


async def register_sweep_schedule(client: Client, tenant: Tenant, task_queue: str) -> str:
    """Create the tenant's sweep schedule, or bring an existing one up to date."""
    schedule = sweep_schedule(tenant, task_queue)
    return await upsert_schedule(client, sweep_schedule_id(tenant.id), schedule)


async def register_sweep_schedules(
    client: Client, tenants: TenantRegistry, task_queue: str
) -> list[str]:
    return [await register_sweep_schedule(client, tenant, task_queue) for tenant in tenants]
