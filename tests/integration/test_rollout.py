"""Safe rollout with Worker Deployment Versioning (issue 10): writes go to the deployment's current
version only; after v2 is made current and v1's worker stops, a write that was waiting for a person
since v1 is finished by v2, and new writes run on v2."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from support.sandbox_process import SandboxProcess
from support.temporal import temporal_address
from support.versioning import set_current_version
from support.worker_process import WorkerProcess
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from workers import samples
from workers.client import WritebackClient
from workflows.contract import Resolution, ResolutionAction, WriteCommand, WriteState

pytestmark = pytest.mark.integration

TENANT = "demo-epic"


async def make_current(client: WritebackClient, deployment: str, build_id: str) -> None:
    """Retry while the server has not yet registered the version's pollers."""
    for _ in range(100):
        try:
            await set_current_version(client.temporal, deployment, build_id)
            return
        except RPCError:
            await asyncio.sleep(0.2)
    await set_current_version(client.temporal, deployment, build_id)


async def build_id_of(client: WritebackClient, workflow_id: str) -> str:
    description = await client.temporal.get_workflow_handle(workflow_id).describe()
    versioning = description.raw_description.workflow_execution_info.versioning_info
    return str(versioning.deployment_version.build_id)


async def test_a_new_version_takes_over_new_and_waiting_writes(
    dev_server: WorkflowEnvironment,
    ehr: SandboxProcess,
    tenants_file: Path,
    faults: httpx.AsyncClient,
    worker_processes: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    task_queue = f"roll-{uuid.uuid4().hex[:8]}"
    deployment = f"wb{uuid.uuid4().hex[:6]}"
    address = temporal_address(dev_server)
    client = WritebackClient(dev_server.client, task_queue=task_queue)

    def worker(build_id: str) -> WorkerProcess:
        env = {"WRITEBACK_DEPLOYMENT": deployment, "WRITEBACK_BUILD_ID": build_id}
        process = WorkerProcess(
            address, task_queue, tenants_file, tmp_path / f"{build_id}.log", env
        )
        worker_processes.append(process)
        return process

    def write(n: int) -> WriteCommand:
        key = f"roll-{uuid.uuid4().hex[:10]}"
        return WriteCommand(tenant=TENANT, idempotency_key=key, resource=samples.heart_rate(key, n))

    v1 = worker("v1")
    await make_current(client, deployment, "v1")
    # a write that waits for a person: the EHR already holds two copies for its command
    waiting = write(70)
    body = {
        **waiting.resource,
        "identifier": [{"system": COMMAND_IDENTIFIER_SYSTEM, "value": waiting.command_identifier}],
    }
    for _ in range(2):
        await faults.post(f"/fhir/{TENANT}/Observation", json=body)
    await client.submit(waiting)
    assert (await client.wait(waiting.workflow_id)).state is WriteState.PENDING_CONFIRMATION
    before = write(71)
    await client.submit(before)
    assert (await client.wait(before.workflow_id)).state is WriteState.VERIFIED
    assert await build_id_of(client, before.workflow_id) == "v1"

    worker("v2")
    await make_current(client, deployment, "v2")
    v1.stop()

    abandon = Resolution(action=ResolutionAction.ABANDON, by="op-7", reason="rollout test")
    final = await asyncio.wait_for(
        client.resolve(waiting.workflow_id, abandon, f"d-{uuid.uuid4().hex[:8]}"), timeout=60
    )
    assert final.state is WriteState.ABANDONED
    assert await build_id_of(client, waiting.workflow_id) == "v2"
    after = write(72)
    await client.submit(after)
    assert (await asyncio.wait_for(client.wait(after.workflow_id), 60)).state is WriteState.VERIFIED
    assert await build_id_of(client, after.workflow_id) == "v2"
