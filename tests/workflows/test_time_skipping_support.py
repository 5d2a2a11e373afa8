"""The test server's clock: after several workflow results were awaited at once, and while a
result is awaited through a handle that ``start_workflow`` did not return.

Each ``handle.result()`` on the time-skipping server unlocks the server's clock when it starts
and locks it when it ends; the server keeps no count of overlapping unlocks, so awaiting two
results together left the clock locked for the rest of the session, and every later workflow
test ran its timers in real time (a saga chaos test took minutes instead of seconds, and
``env.sleep`` calls ran past their RPC deadline). tests/support/temporal.py counts the holders
on our side; the first test fails without it.

The SDK unlocks the clock only in ``result()`` of a handle that ``start_workflow`` returned; the
server starts with its clock locked. A test that submits through ``WritebackClient`` and waits
on ``get_workflow_handle(...)`` waited with the clock locked: the first write of a test module
that waited a 66 s quiet period took 66 s (tests/workflows/test_write_safety.py took 14 minutes
instead of half a minute). ``result_of`` unlocks for any handle; the second test fails without
it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
from support.workflow_runs import result_of
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from workers import samples
from workers.client import WritebackClient
from workflows.clinical_write import ClinicalWrite
from workflows.contract import WriteCommand, WriteState


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


async def test_a_result_awaited_through_any_handle_lets_the_clock_skip(
    time_skipping: WorkflowEnvironment,
) -> None:
    client = time_skipping.client
    queue = f"sleepers-{uuid.uuid4().hex[:8]}"
    day = timedelta(days=1).total_seconds()
    async with Worker(
        client, task_queue=queue, workflows=[Sleeper], workflow_runner=UnsandboxedWorkflowRunner()
    ):
        started = await client.start_workflow(
            Sleeper.run, day, id=f"{queue}-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        handle = client.get_workflow_handle_for(Sleeper.run, started.id)  # as tests look one up
        # a locked clock would take a day; the bound is the condition's patience
        assert await asyncio.wait_for(result_of(handle), timeout=120) == day


async def test_a_tenants_breaker_stays_closed_where_time_skips(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    """Five refusals in a row open a tenant's breaker (its default). Its cooldown is real time
    and the retry delay it asks for is skipped here, so the write's next attempts were refused by
    our own breaker, one after another, instead of being sent (support/workers.py
    ``breakers_kept_closed``)."""
    refusals = [{"kind": "status", "status": 503, "method": "POST"}] * 5
    await faults.post("/_admin/faults/demo-r4", json={"queue": refusals})
    command = WriteCommand(
        tenant="demo-r4", idempotency_key=key, resource=samples.heart_rate("breaker", 64)
    )
    submission = await writeback.submit(command)
    handle = writeback.temporal.get_workflow_handle_for(ClinicalWrite.run, submission.workflow_id)
    # the clock skips while it waits; the bound is the condition's patience (without the fix the
    # refusals spent the write's budget and it waited for a person)
    status = await asyncio.wait_for(result_of(handle), timeout=120)

    outcomes = [exchange.outcome for exchange in status.ehr_log]
    assert not [outcome for outcome in outcomes if "circuit open" in outcome], outcomes
    assert status.state is WriteState.VERIFIED, outcomes
    assert status.attempts == 6, outcomes
