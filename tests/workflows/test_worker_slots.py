"""The workflow worker takes only as many workflow tasks as it can run before their timeout.

Python runs a worker's workflow tasks one at a time, and a task's start-to-close timeout (10 s)
runs from the moment the worker takes it. A worker that replaced a killed one used to take the
SDK's default of 100 tasks, each replaying a whole history: the last ones timed out, and the
server backed them off for minutes (workers/worker.py WORKFLOW_TASK_SLOTS)."""

from __future__ import annotations

import httpx
from temporalio.testing import WorkflowEnvironment

from adapters.tenants import TenantRegistry
from workers.worker import WORKFLOW_TASK_SLOTS, build_workers


async def test_the_workflow_worker_takes_few_workflow_tasks_at_a_time(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry
) -> None:
    async with httpx.AsyncClient() as http:
        workflow_worker = build_workers(time_skipping.client, tenants, http, "slots-test")[0]
    assert workflow_worker.config()["max_concurrent_workflow_tasks"] == WORKFLOW_TASK_SLOTS
    # a 2-core worker replaying histories of ~40 KB (~100 ms each under load) finishes its
    # whole batch well inside the 10 s timeout
    assert WORKFLOW_TASK_SLOTS <= 10
