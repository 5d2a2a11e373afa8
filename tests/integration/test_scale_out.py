"""Issue 10, acceptance 3: three `writeback worker` processes on the same task queues against one
Temporal server share the load (each one runs EHR activities), the tenant's limit of R requests/s
holds across all of them (the sandbox's per-second request counts), and SIGKILLing one of them
mid-run loses and duplicates nothing (counted from the sandbox's SQLite file)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from support.audit import resources_for_command
from support.sandbox_process import SandboxProcess
from support.temporal import temporal_address
from support.tenants import TEST_TENANTS
from support.worker_process import WorkerProcess
from temporalio.testing import WorkflowEnvironment

from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteCommand, WriteState

pytestmark = pytest.mark.integration

TENANT = "limited-r4"
(RATE_LIMIT,) = [t.rate_limit for t in TEST_TENANTS if t.id == TENANT]
WRITES = 40  # 2 EHR requests each (conditional create + read-back): 16 s at R = 5/s


async def poll_log(path: Path, pattern: str, within: float = 90.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not re.search(pattern, await asyncio.to_thread(path.read_text)):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{path.name} never logged {pattern!r}")
        await asyncio.sleep(0.1)


async def ehr_activity_workers(client: WritebackClient, workflow_id: str) -> set[str]:
    """Identities of the workers that started this write's EHR activities (from its history)."""
    history = await client.temporal.get_workflow_handle(workflow_id).fetch_history()
    scheduled: dict[int, str] = {}
    identities: set[str] = set()
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attrs.task_queue.name
        if event.HasField("activity_task_started_event_attributes"):
            attrs_started = event.activity_task_started_event_attributes
            if "-ehr-" in scheduled.get(attrs_started.scheduled_event_id, ""):
                identities.add(attrs_started.identity)
    return identities


async def test_three_workers_share_writes_within_the_tenant_limit_and_survive_a_kill(
    dev_server: WorkflowEnvironment,
    ehr: SandboxProcess,
    tenants_file: Path,
    faults: httpx.AsyncClient,
    worker_processes: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    assert RATE_LIMIT is not None
    task_queue = f"scale-{uuid.uuid4().hex[:8]}"
    address = temporal_address(dev_server)
    client = WritebackClient(dev_server.client, task_queue=task_queue)
    await faults.post(f"/_admin/reset/{TENANT}")
    logs = [tmp_path / f"worker-{n}.log" for n in range(3)]
    for log in logs:
        worker_processes.append(
            WorkerProcess(address, task_queue, tenants_file, log, {"WRITEBACK_LOG_LEVEL": "INFO"})
        )
    # each process has counted the other two before any write starts (workers/rate_share.py)
    for log in logs:
        await poll_log(log, f"tenant {TENANT}: pacing as worker . of 3")
    run = uuid.uuid4().hex[:6]
    commands = [
        WriteCommand(
            tenant=TENANT,
            idempotency_key=f"scale-{run}-{n}",
            resource=samples.heart_rate(f"scale-{run}-{n}", 60 + n % 40),
        )
        for n in range(WRITES)
    ]
    await asyncio.gather(*(client.submit(cmd) for cmd in commands))

    # Kill one worker once a quarter of the writes are verified: it is mid-run, with EHR
    # activities of its own in flight or about to be polled.
    victim = worker_processes[1]
    verified = f"WritebackState = 'verified' AND WorkflowId STARTS_WITH 'wb:{TENANT}:scale-{run}-'"
    for _ in range(600):
        if (await client.temporal.count_workflows(verified)).count >= WRITES // 4:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("no write was verified within 60 s")
    victim.kill()

    finals = await asyncio.wait_for(
        asyncio.gather(*(client.wait(cmd.workflow_id, poll_seconds=1.0) for cmd in commands)),
        timeout=240,
    )
    assert [status.state for status in finals] == [WriteState.VERIFIED] * WRITES
    copies = [resources_for_command(ehr.db, TENANT, cmd.command_identifier) for cmd in commands]
    assert copies == [1] * WRITES

    # every worker, the killed one included, ran EHR activities
    per_worker: Counter[str] = Counter()
    for cmd in commands:
        per_worker.update(await ehr_activity_workers(client, cmd.workflow_id))
    print("writes whose EHR activities each worker ran:", dict(per_worker))
    assert {w.identity for w in worker_processes} <= per_worker.keys()

    # the tenant's limit held across the three workers in every second
    stats = (await faults.get(f"/_admin/stats/{TENANT}")).json()
    print("EHR requests per second:", [second["total"] for second in stats["per_second"]])
    assert stats["total"] >= 2 * WRITES
    assert stats["max_per_second"] <= RATE_LIMIT
