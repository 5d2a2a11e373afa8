"""The test server's clock after several workflow results were awaited at once.

Each ``handle.result()`` on the time-skipping server unlocks the server's clock when it starts
and locks it when it ends; the server keeps no count of overlapping unlocks, so awaiting two
results together left the clock locked for the rest of the session, and every later workflow
test ran its timers in real time (a saga chaos test took minutes instead of seconds, and
``env.sleep`` calls ran past their RPC deadline). tests/support/temporal.py counts the holders
on our side; this test fails without it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker


@workflow.defn(sandboxed=False)
class Sleeper:
    @workflow.run
    async def run(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds


async def test_the_clock_still_skips_after_results_were_awaited_together(
    time_skipping: WorkflowEnvironment,
) -> None:
    client = time_skipping.client
    queue = f"sleepers-{uuid.uuid4().hex[:8]}"

    async def sleep_for(seconds: float) -> float:
        return await client.execute_workflow(
            Sleeper.run, seconds, id=f"{queue}-{uuid.uuid4().hex[:8]}", task_queue=queue
        )

    async with Worker(
        client, task_queue=queue, workflows=[Sleeper], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        assert await asyncio.gather(sleep_for(5), sleep_for(60), sleep_for(90)) == [5, 60, 90]
        # a day of workflow time: only a skipping clock gets there (a locked one would take a
        # day; the bound is the condition's patience, not a timing threshold)
        day = timedelta(days=1).total_seconds()
        assert await asyncio.wait_for(sleep_for(day), timeout=120) == day
