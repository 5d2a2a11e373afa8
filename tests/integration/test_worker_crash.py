"""Acceptance 3: SIGKILL the worker while writes are in flight, start a new one: every write ends
verified and none is duplicated (counted from the sandbox's database)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from support.audit import resources_for_command
from support.sandbox_process import SandboxProcess
from support.temporal import temporal_address
from support.worker_process import WorkerProcess
from temporalio.testing import WorkflowEnvironment

from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteCommand, WriteState

pytestmark = pytest.mark.integration

WRITES_PER_TENANT = 8


async def test_worker_killed_mid_flight_loses_and_duplicates_nothing(
    dev_server: WorkflowEnvironment,
    ehr: SandboxProcess,
    tenants_file: Path,
    faults: httpx.AsyncClient,
    worker_processes: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    task_queue = f"crash-{uuid.uuid4().hex[:8]}"
    address = temporal_address(dev_server)
    client = WritebackClient(dev_server.client, task_queue=task_queue)
    tenants = ["demo-r4", "demo-epic", "demo-cerner"]
    # Slow EHR: every request takes 1.5 s, so the kill lands while requests are in flight, some
    # of them creates the EHR will commit after the worker died.
    for tenant in tenants:
        await faults.post(f"/_admin/faults/{tenant}", json={"latency_ms": 1500})

    worker_processes.append(WorkerProcess(address, task_queue, tenants_file, tmp_path / "w1.log"))
    commands = [
        WriteCommand(
            tenant=tenant,
            idempotency_key=f"crash-{uuid.uuid4().hex[:12]}",
            resource=samples.heart_rate(f"crash-{n}", 60 + n),
        )
        for tenant in tenants
        for n in range(WRITES_PER_TENANT)
    ]
    await asyncio.gather(*(client.submit(cmd) for cmd in commands))

    async def some_in_flight() -> bool:
        states = [(await client.status(cmd.workflow_id)).state for cmd in commands]
        return WriteState.IN_FLIGHT in states or WriteState.ACKNOWLEDGED in states

    for _ in range(200):
        if await some_in_flight():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no write ever reached the EHR step")
    worker_processes[0].kill()
    for tenant in tenants:
        await faults.post(f"/_admin/faults/{tenant}", json={"latency_ms": 0})

    worker_processes.append(WorkerProcess(address, task_queue, tenants_file, tmp_path / "w2.log"))
    finals = await asyncio.wait_for(
        # a create that went unanswered when the worker died is searched for through its quiet
        # period (from its attempt's timeout: + the tenant's 10 s late-commit window + 5 s)
        # before the one-copy check
        asyncio.gather(*(client.wait(cmd.workflow_id) for cmd in commands)),
        timeout=240,
    )

    assert [status.state for status in finals] == [WriteState.VERIFIED] * len(commands)
    copies = [resources_for_command(ehr.db, cmd.tenant, cmd.command_identifier) for cmd in commands]
    assert copies == [1] * len(commands)
