"""Capability discovery on a Temporal Schedule (dev server: the test server has no Schedules):
each triggered run stores the profile and reports drift as a failed run naming it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from support.workers import running_worker
from temporalio.client import ScheduleHandle, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.capability_discovery import DiscoveryReport
from adapters.tenants import TenantRegistry
from workers.client import WritebackClient
from workers.discovery_schedule import schedule_discovery
from workflows.tenant_discovery import MISMATCH_ERROR_TYPE

pytestmark = pytest.mark.integration


@pytest.fixture
async def scheduling(
    dev_server: WorkflowEnvironment,
    tenants: TenantRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[WritebackClient]:
    monkeypatch.setenv("WRITEBACK_STATE_DIR", str(tmp_path))
    async with running_worker(dev_server.client, tenants) as client:
        yield client


async def next_run(handle: ScheduleHandle, seen: int) -> str:
    """Trigger the schedule; the workflow id of the run it starts."""
    await handle.trigger()
    for _ in range(200):
        actions = (await handle.describe()).info.recent_actions
        if len(actions) > seen:
            return actions[-1].action.workflow_id
        await asyncio.sleep(0.05)
    raise AssertionError("the schedule started no run")


async def test_scheduled_discovery_stores_the_profile_then_reports_drift(
    scheduling: WritebackClient, faults: httpx.AsyncClient, tmp_path: Path
) -> None:
    temporal = scheduling.temporal
    every = timedelta(hours=24)
    schedule_id = await schedule_discovery(temporal, "demo-r4", scheduling.task_queue, every)
    handle = temporal.get_schedule_handle(schedule_id)
    try:
        assert await schedule_discovery(temporal, "demo-r4", scheduling.task_queue, every) == (
            schedule_id
        )  # scheduling again replaces, it does not fail
        first = await temporal.get_workflow_handle(await next_run(handle, 0)).result()
        report = DiscoveryReport.model_validate(first)
        assert report.first_check and report.mismatches == []
        assert (tmp_path / "capabilities" / "demo-r4.json").exists()

        drift = {"required_fields": ["Observation.performer"]}
        assert (await faults.post("/_admin/faults/demo-r4", json={"drift": drift})).is_success
        run = temporal.get_workflow_handle(await next_run(handle, 1))
        with pytest.raises(WorkflowFailureError) as failed:
            await run.result()
        cause = failed.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == MISMATCH_ERROR_TYPE
        assert "schema drift: Observation.performer is required by the server" in cause.message
    finally:
        await handle.delete()
