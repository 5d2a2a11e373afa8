"""Following a write waits on the workflow (the ``wait_settled`` update), not on a timer: the
client learns each transition as it happens and returns once the write is settled; a write that
already ended is answered from its result."""

from __future__ import annotations

import httpx
from support.workflow_runs import command, run_to_end
from temporalio.api.enums.v1 import EventType

from workers import samples
from workers.client import WritebackClient
from workflows.contract import Urgency, WriteState, WriteStatus
from workflows.person_waits import SETTLED_ONLY

UNAVAILABLE = {"kind": "status", "status": 503, "method": "POST"}


async def test_following_a_write_waits_on_the_workflow_until_it_waits_for_a_person(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    await faults.post("/_admin/faults/fast-r4", json={"queue": [UNAVAILABLE] * 5})
    cmd = command("fast-r4", key, samples.heart_rate("wait-pt", 71), urgency=Urgency.STAT)
    await writeback.submit(cmd)
    seen: list[WriteStatus] = []

    status = await writeback.wait(cmd.workflow_id, on_change=seen.append)

    assert status.state is WriteState.PENDING_CONFIRMATION
    assert seen[-1].transitions == status.transitions
    lengths = [len(s.transitions) for s in seen]
    assert lengths == sorted(set(lengths)), "each change reported once, in order"
    handle = writeback.temporal.get_workflow_handle(cmd.workflow_id)
    updates = [
        event.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        async for event in handle.fetch_history_events()
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    ]
    assert updates and set(updates) == {"wait_settled"}


async def test_a_write_that_ended_is_answered_from_its_result(
    writeback: WritebackClient, key: str
) -> None:
    done = await run_to_end(writeback, command("fast-r4", key, reconcile=False))

    assert (await writeback.wait(done.workflow_id)).state is WriteState.VERIFIED


async def test_a_wait_that_runs_out_answers_with_the_state_as_it_is_and_leaves_nothing_open(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    # a routine write keeps retrying for hours: it is not settled when the wait runs out
    await faults.post("/_admin/faults/fast-r4", json={"queue": [UNAVAILABLE] * 50})
    cmd = command("fast-r4", key, samples.heart_rate("wait-pt", 72))
    await writeback.submit(cmd)
    handle = writeback.temporal.get_workflow_handle(cmd.workflow_id)

    status = await handle.execute_update(
        "wait_settled", args=[SETTLED_ONLY, 2.0], result_type=WriteStatus
    )

    assert not status.state.is_settled
    events = [event.event_type async for event in handle.fetch_history_events()]
    accepted = events.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED)
    completed = events.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)
    assert accepted == completed == 1
    await handle.terminate("test over")
