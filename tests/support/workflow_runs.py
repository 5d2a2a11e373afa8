"""Driving ClinicalWrite in workflow tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from support.temporal import client_of, clock_unlocked
from workers import samples
from workers.client import WritebackClient
from workflows.clinical_write import ClinicalWrite
from workflows.contract import WriteCommand, WriteState, WriteStatus

R = TypeVar("R")


def command(
    tenant: str, key: str, resource: dict[str, Any] | None = None, **kw: Any
) -> WriteCommand:
    return WriteCommand(
        tenant=tenant,
        idempotency_key=key,
        resource=resource or samples.heart_rate("wf-test", 72),
        **kw,
    )


async def run_to_end(client: WritebackClient, cmd: WriteCommand) -> WriteStatus:
    """Submit and wait for the workflow's result (lets the test server skip retry delays)."""
    submission = await client.submit(cmd)
    handle = client.temporal.get_workflow_handle_for(ClinicalWrite.run, submission.workflow_id)
    return await result_of(handle)


async def result_of(handle: WorkflowHandle[Any, R]) -> R:
    """``handle.result()`` with the time-skipping server's clock unlocked while it waits (any
    handle, not only one ``start_workflow`` returned: tests/support/temporal.py), asked again
    when the server's long poll ends without the result: on a loaded machine the time-skipping
    server's history poll can time out ("Timeout expired"), or return a page without the
    completion event, while the workflow still runs."""
    async with clock_unlocked(client_of(handle)):
        for _ in range(20):
            try:
                return await handle.result()
            except RPCError as exc:
                if "Timeout expired" not in exc.message:
                    raise
            except RuntimeError as exc:
                if "No completion event found" not in str(exc):
                    raise
    raise AssertionError(f"{handle.id}: no result after 20 long polls")


async def results_of(
    env: WorkflowEnvironment, handles: Sequence[WorkflowHandle[Any, R]]
) -> list[R]:
    """The results of several workflows awaited at once, the clock unlocked once for the whole
    wait (the per-result unlocks inside only count waiters: tests/support/temporal.py)."""
    async with clock_unlocked(env.client):
        return list(await asyncio.gather(*(result_of(handle) for handle in handles)))


async def wait_until_settled(
    env: WorkflowEnvironment, client: WritebackClient, workflow_id: str
) -> WriteStatus:
    """Poll until the write is terminal or parks for a person, skipping workflow time between
    polls (the test server only skips time while someone waits on it)."""
    for _ in range(200):
        status = await client.status(workflow_id)
        if status.state.is_settled:
            return status
        await env.sleep(timedelta(seconds=5))
    raise AssertionError(f"{workflow_id} never settled; last state {status.state}")


async def wait_for_state(
    client: WritebackClient, workflow_id: str, state: WriteState, within: float = 20.0
) -> WriteStatus:
    """Poll (real time) until the write reaches ``state``: for steps that run activities after a
    skipped timer."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            status = await client.status(workflow_id)
        except RPCError as exc:  # a query that timed out on a loaded machine: ask again
            if "Timeout expired" not in exc.message:
                raise
            continue
        if status.state is state or asyncio.get_running_loop().time() > deadline:
            return status
        await asyncio.sleep(0.1)


async def recorded(client: WritebackClient, workflow_ids: list[str]) -> None:
    """Until each write has ended: its last ledger hand-over, which moves the record the sweep
    reads (activities/write_records.py), is made before it ends. ``wait`` answers as soon as the
    write is verified, which can be a hand-over earlier on a loaded machine."""
    for workflow_id in workflow_ids:
        await client.temporal.get_workflow_handle(workflow_id).result()


async def verified_heart_rates(
    client: WritebackClient, tenant: str, count: int, prefix: str
) -> list[WriteStatus]:
    """``count`` heart rates written to ``tenant`` (keys and patients named by ``prefix``), each
    verified and its record saved (``recorded``): what a reconciliation sweep then compares."""
    commands = [
        WriteCommand(
            tenant=tenant,
            idempotency_key=f"{prefix}-{uuid.uuid4().hex[:12]}",
            resource=samples.heart_rate(f"{prefix}-pt-{n}", 60 + n),
        )
        for n in range(count)
    ]
    submissions = [await client.submit(command) for command in commands]
    statuses = [await client.wait(s.workflow_id) for s in submissions]
    assert all(status.state is WriteState.VERIFIED for status in statuses)
    await recorded(client, [s.workflow_id for s in submissions])
    return statuses
