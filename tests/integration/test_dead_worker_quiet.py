"""A worker that dies mid-attempt: its write activity times out (start-to-close), and the quiet
period before a re-send counts from that timeout, not from the attempt's later send-by bound. An
attempt sends nothing after its start-to-close deadline (activities/deadline.py) and Temporal
reports the timeout only after it, so nothing of the dead attempt can still leave (only commit
late, which the tenant's late-commit window covers)."""

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
from support.workflow_runs import command
from temporalio.testing import WorkflowEnvironment

from workers.client import WritebackClient
from workflows.contract import WriteState

pytestmark = pytest.mark.integration

#: lag-epic: search before create, 1 s request timeout, 2 s late-commit window
TENANT = "lag-epic"
QUIET = 2 + 5  # the late-commit window and the 5 s margin (adapters/tenants.py)
# a write attempt's start-to-close there: 3 requests of 1 s + 5 s = 8 s (workflows/write_sending.py)


async def test_a_dead_workers_attempt_is_waited_out_from_its_timeout(
    dev_server: WorkflowEnvironment,
    ehr: SandboxProcess,
    tenants_file: Path,
    faults: httpx.AsyncClient,
    worker_processes: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    task_queue = f"dead-{uuid.uuid4().hex[:8]}"
    address = temporal_address(dev_server)
    client = WritebackClient(dev_server.client, task_queue=task_queue)
    await faults.post(f"/_admin/reset/{TENANT}")
    # every request takes 0.8 s (under the 1 s timeout): the attempt is still at work when the
    # worker is killed
    await faults.post(f"/_admin/faults/{TENANT}", json={"latency_ms": 800})
    worker_processes.append(WorkerProcess(address, task_queue, tenants_file, tmp_path / "w1.log"))
    cmd = command(TENANT, f"dead-{uuid.uuid4().hex[:10]}")
    await client.submit(cmd)
    for _ in range(400):
        if (await client.status(cmd.workflow_id)).state is WriteState.IN_FLIGHT:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the write never reached the EHR step")
    worker_processes[0].kill()
    await faults.post(f"/_admin/faults/{TENANT}", json={"latency_ms": 0})
    worker_processes.append(WorkerProcess(address, task_queue, tenants_file, tmp_path / "w2.log"))

    status = await asyncio.wait_for(client.wait(cmd.workflow_id), timeout=120)

    assert status.state is WriteState.VERIFIED
    assert resources_for_command(ehr.db, TENANT, cmd.command_identifier) == 1
    log = status.ehr_log
    timed_out = next(e for e in log if e.step == "write" and "TimeoutError" in e.outcome)
    # the first look after the quiet period: the search that allows a re-send (nothing had
    # landed) or the count of copies (the dead attempt's create had landed and was found)
    after_quiet = next(
        e
        for e in log
        if e.step == "copies" or e.outcome.startswith("nothing found after the quiet period")
    )
    waited = (after_quiet.at - timed_out.at).total_seconds()
    # counted from the moment the workflow learned of the timeout: the quiet period and the
    # clock-skew second (+ a search's time). Counted from the attempt's send-by bound (twice
    # start-to-close after it began) it would be 2 * 8 - 8 + 7 = 15 s when the new worker picks
    # the write up at once (a slow pick-up shortens that difference, never this wait)
    assert QUIET <= waited <= QUIET + 1 + 4, [(e.step, e.outcome) for e in log]
