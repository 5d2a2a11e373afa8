"""Running the real worker in-process for a test, on a task queue of its own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    WorkflowHandle,
)
from temporalio.service import RPCError

from adapters.tenants import BreakerSettings, TenantRegistry
from support.callers import SigningInterceptor
from support.temporal import server_clock, skips_time
from workers.client import WritebackClient
from workers.worker import ehr_http_client, running_workers


class _StartedWorkflows(Interceptor):
    """Remembers the ids of the workflows a test's client starts."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _RecordStarts(next, self.ids)


class _RecordStarts(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, ids: list[str]) -> None:
        super().__init__(next)
        self._ids = ids

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        handle = await super().start_workflow(input)
        self._ids.append(input.id)
        return handle


async def _terminate_running(client: Client, ids: list[str]) -> None:
    """A write a test left waiting for a person keeps re-checking the EHR on its timers: on the
    time-skipping server, those timers would fire in the middle of the next tests (on a task queue
    nobody polls any more) and stall their time skipping. End them with their test."""
    for workflow_id in dict.fromkeys(ids):
        handle = client.get_workflow_handle(workflow_id)
        with suppress(RPCError):
            described = await handle.describe()
            if described.raw_description.workflow_execution_info.status == (
                WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
            ):
                await handle.terminate(reason="the test that started it has ended")


#: A failure count no test reaches: the breaker stays closed.
_NEVER_OPENS = BreakerSettings(failures=2**31)


def breakers_kept_closed(tenants: TenantRegistry) -> TenantRegistry:
    """The tenants with circuit breakers that never open, for workers on the time-skipping
    server. A breaker's cooldown runs in real time, but the retry delay an open breaker asks
    for is workflow time, which that server skips: the tenant's activities were refused attempt
    after attempt, tens a second, for the whole real cooldown, while their workflows' clocks raced
    through quiet periods and budgets. Under seeded chaos the refusals reopened the breaker as
    soon as it closed, and a saga test spun for its whole 300 s timeout (7,483 refused attempts
    of one write). The breaker is tested where time is real: tests/unit/test_merge_and_breaker.py,
    tests/integration/test_outage.py."""
    kept = [tenant.model_copy(update={"breaker": _NEVER_OPENS}) for tenant in tenants]
    return TenantRegistry(kept, tenants.source)


@asynccontextmanager
async def running_worker(client: Client, tenants: TenantRegistry) -> AsyncIterator[WritebackClient]:
    """Start a worker on a fresh task queue; yield a WritebackClient that submits to it. What
    the test started and left running is terminated when it ends. On the time-skipping server
    the tenants' breakers stay closed (``breakers_kept_closed``)."""
    if skips_time(client):
        tenants = breakers_kept_closed(tenants)
    task_queue = f"test-{uuid.uuid4().hex[:8]}"
    started = _StartedWorkflows()
    config = client.config()
    signing = SigningInterceptor(server_clock(client))
    recording = Client(**{**config, "interceptors": [*config["interceptors"], started, signing]})
    try:
        async with ehr_http_client() as http, running_workers(client, tenants, http, task_queue):
            yield WritebackClient(recording, task_queue=task_queue, clock=server_clock(client))
    finally:
        await _terminate_running(client, started.ids)
