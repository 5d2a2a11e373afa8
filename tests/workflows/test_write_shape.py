"""What a write started today records in its history (workflows/write_kernel.py CURRENT_SHAPE):
one version marker instead of one per patch, validate + map + authorize as one local activity
and its ledger lines handed over when it settles or before it waits,
not at every published state. Each marker and upsert is an event and a server write per write;
the assertions count them."""

from __future__ import annotations

import httpx
from support.sandbox_process import SandboxProcess
from support.workflow_runs import command, run_to_end
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from adapters.interactions import Interaction
from workers import samples
from workers.client import WritebackClient
from workflows.contract import WriteState

MARKER = EventType.EVENT_TYPE_MARKER_RECORDED
UPSERT = EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES


async def events_of(writeback: WritebackClient, workflow_id: str) -> list[HistoryEvent]:
    history = await writeback.temporal.get_workflow_handle(workflow_id).fetch_history()
    return list(history.events)


def local_activities(events: list[HistoryEvent]) -> list[HistoryEvent]:
    return [
        e
        for e in events
        if e.event_type == MARKER
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]


def patches(events: list[HistoryEvent]) -> list[HistoryEvent]:
    return [
        e
        for e in events
        if e.event_type == MARKER and e.marker_recorded_event_attributes.marker_name == "core_patch"
    ]


async def test_a_quick_write_records_one_patch_one_pure_step_and_one_ledger_hand_over(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    await faults.post("/_admin/reset/demo-r4")
    cmd = command("demo-r4", key)

    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED
    events = await events_of(writeback, cmd.workflow_id)
    assert len(patches(events)) == 1
    # prepare, then the ledger's one hand-over (every transition, in_flight included)
    assert len(local_activities(events)) == 2
    # TemporalChangeVersion (the SDK's, with the patch), in_flight, verified
    assert sum(e.event_type == UPSERT for e in events) == 3
    assert [t.state for t in status.transitions][:3] == [
        WriteState.REQUESTED,
        WriteState.VALIDATED,
        WriteState.AUTHORIZED,
    ]


async def test_a_write_that_backs_off_hands_its_lines_over_before_it_waits(
    writeback: WritebackClient, ehr: SandboxProcess, faults: httpx.AsyncClient, key: str
) -> None:
    """A 503 to the first POST: the write sleeps before its next attempt, and the ledger has its
    lines so far (in_flight) before that wait, then the rest when it settles."""
    await faults.post("/_admin/reset/demo-r4")
    refused = {"kind": "status", "status": 503, "method": "POST"}
    await faults.post("/_admin/faults/demo-r4", json={"queue": [refused]})
    cmd = command("demo-r4", key)

    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.VERIFIED and status.attempts == 2
    events = await events_of(writeback, cmd.workflow_id)
    fired = next(e.event_id for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED)
    hand_overs = local_activities(events)[1:]  # after prepare
    assert len(hand_overs) == 2
    assert hand_overs[0].event_id < fired < hand_overs[1].event_id


async def test_a_refusal_after_validation_is_recorded_after_validated(
    writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    """The one step refuses at mapping or authorizing (this Epic tenant takes creates only): the
    write still records ``validated`` (with its vendor) before it ends ``rejected``, as with
    three steps, and nothing reaches the EHR."""
    cmd = command(
        "demo-epic",
        key,
        samples.heart_rate("wf-test", 72),
        interaction=Interaction.UPDATE,
        target="Observation/obs-1",
        base_version="1",
    )

    status = await run_to_end(writeback, cmd)

    assert status.state is WriteState.REJECTED
    assert status.error_class == "unsupported"
    assert [t.state for t in status.transitions] == [
        WriteState.REQUESTED,
        WriteState.VALIDATED,
        WriteState.REJECTED,
    ]
    assert status.vendor == "epic"
    events = await events_of(writeback, cmd.workflow_id)
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in [e.event_type for e in events]
