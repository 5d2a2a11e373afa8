"""Workflow tests: the time-skipping test server, the real worker, the real sandbox EHR."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from support.interleave import Interleave
from support.temporal import server_clock
from support.workers import breakers_kept_closed, running_worker
from temporalio.testing import WorkflowEnvironment

from adapters.tenants import TenantRegistry
from workers.client import WritebackClient
from workers.worker import running_workers


@pytest.fixture
async def writeback(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry
) -> AsyncIterator[WritebackClient]:
    async with running_worker(time_skipping.client, tenants) as client:
        yield client


@pytest.fixture
def interleave() -> Interleave:
    return Interleave()


@pytest.fixture
async def racing(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry, interleave: Interleave
) -> AsyncIterator[WritebackClient]:
    """A worker whose EHR client lets the test edit between our read and our write
    (``interleave.before_writes``) and keeps every write as sent (``interleave.writes``)."""
    task_queue = f"race-{uuid.uuid4().hex[:8]}"
    async with (
        interleave.client() as http,
        running_workers(time_skipping.client, breakers_kept_closed(tenants), http, task_queue),
    ):
        yield WritebackClient(
            time_skipping.client, task_queue=task_queue, clock=server_clock(time_skipping.client)
        )
