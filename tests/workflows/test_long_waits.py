"""A write that waits for weeks does not grow one history without bound: past
CONTINUE_AS_NEW_AFTER_EVENTS it continues as a new run carrying everything it knew, and a
decision taken after that acts on the whole story."""

from __future__ import annotations

from datetime import timedelta

import httpx
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command, wait_until_settled
from temporalio.testing import WorkflowEnvironment

from workers.client import WritebackClient
from workflows.clinical_write import CONTINUE_AS_NEW_AFTER_EVENTS
from workflows.contract import Resolution, ResolutionAction, Urgency, WriteState

UNAVAILABLE = {"kind": "status", "status": 503, "method": "POST"}


async def test_a_write_waiting_for_weeks_continues_as_new_and_keeps_its_story(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    await faults.post("/_admin/faults/demo-r4", json={"queue": [UNAVAILABLE] * 5})
    cmd = command("demo-r4", key, urgency=Urgency.STAT)
    await writeback.submit(cmd)
    waiting = await wait_until_settled(time_skipping, writeback, cmd.workflow_id)
    assert waiting.state is WriteState.PENDING_CONFIRMATION
    handle = writeback.temporal.get_workflow_handle(cmd.workflow_id)
    first_run = (await handle.describe()).run_id

    # ~8 events per 4-hourly re-check: 2000 events is some 40 days of waiting. Skipped in steps:
    # one call skipping 45 days runs ~270 re-checks inside a single RPC, whose deadline a loaded
    # machine can pass (RPCError "Timeout expired")
    for _ in range(9):
        await time_skipping.sleep(timedelta(days=5))

    later = await handle.describe()
    assert later.run_id != first_run, "the wait continued as a new run"
    history = [event async for event in handle.fetch_history_events()]
    assert len(history) <= CONTINUE_AS_NEW_AFTER_EVENTS
    status = await writeback.status(cmd.workflow_id)
    assert status.state is WriteState.PENDING_CONFIRMATION
    assert status.attempts == 5 and len(status.ehr_log) > 200  # the whole story came along
    assert status.transitions[0].state is WriteState.REQUESTED

    final = await writeback.resolve(
        cmd.workflow_id,
        Resolution(action=ResolutionAction.RETRY, by="op-9", reason="EHR is back"),
        "d-1",
    )
    assert final.state is WriteState.VERIFIED
    assert final.attempts > 5  # the decision bought new attempts
