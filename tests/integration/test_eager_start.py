"""``WritebackClient(eager_start=True)`` in a process that runs the workers on the same Temporal
client: the server hands the write's first workflow task back with the answer to the start call
(eager workflow start, one dispatch fewer), and the write goes on to ``verified`` as any other.
Without the option, or without a worker in the process, the start is an ordinary one."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from support.temporal import server_clock, temporal_address
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    WorkflowHandle,
)
from temporalio.testing import WorkflowEnvironment

from adapters.tenants import TenantRegistry
from workers import samples
from workers.client import WritebackClient
from workers.temporal_client import connect
from workers.worker import ehr_http_client, running_workers
from workflows.contract import WriteCommand, WriteState

pytestmark = pytest.mark.integration


class _EagerStarts(Interceptor):
    """What the server answered each start: whether it handed the first task back (the SDK
    marks the handle it returns; there is no other trace of it in the workflow's history)."""

    def __init__(self) -> None:
        self.eager: list[bool] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _Record(next, self.eager)


class _Record(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, eager: list[bool]) -> None:
        super().__init__(next)
        self._eager = eager

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        handle = await super().start_workflow(input)
        self._eager.append(bool(getattr(handle, "__temporal_eagerly_started", False)))
        return handle


async def _write(
    dev_server: WorkflowEnvironment,
    tenants: TenantRegistry,
    key: str,
    eager_start: bool,
    worker_here: bool,
) -> tuple[WriteState, list[bool]]:
    """Submit one write on a fresh task queue, with the workers in this process or not (then
    an ordinary worker on another client takes the queue), and wait for it to settle."""
    starts = _EagerStarts()
    config = dev_server.client.config()
    config["interceptors"] = [*config["interceptors"], starts]
    client = Client(**config)
    queue = f"eager-{uuid.uuid4().hex[:8]}"
    # else a worker on a connection of its own: a start from ``client`` cannot be handed to it
    worker_client = client
    if not worker_here:
        worker_client = await connect(temporal_address(dev_server), config["namespace"])
    writeback = WritebackClient(client, queue, clock=server_clock(client), eager_start=eager_start)
    command = WriteCommand(
        tenant="demo-r4", idempotency_key=key, resource=samples.heart_rate("eager", 61)
    )
    async with ehr_http_client() as http, running_workers(worker_client, tenants, http, queue):
        submission = await writeback.submit(command)
        status = await writeback.wait(submission.workflow_id)
    return status.state, starts.eager


@pytest.mark.parametrize(
    ("eager_start", "worker_here", "handed_back"),
    [
        pytest.param(True, True, True, id="eager-with-a-worker-here"),
        pytest.param(False, True, False, id="without-the-option"),
        pytest.param(True, False, False, id="eager-without-a-worker-here"),
    ],
)
async def test_the_first_task_comes_back_only_to_an_eager_start_with_a_worker_here(
    dev_server: WorkflowEnvironment,
    tenants: TenantRegistry,
    key: str,
    eager_start: bool,
    worker_here: bool,
    handed_back: bool,
) -> None:
    state, eager = await _write(dev_server, tenants, key, eager_start, worker_here)
    assert state is WriteState.VERIFIED
    assert eager == [handed_back]
