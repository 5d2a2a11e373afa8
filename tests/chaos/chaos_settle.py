"""Waiting for the chaos run to be over, cheaply, and saying why a write is not.

A write is settled when it is terminal or waits for a person; a saga also when the step it is
writing waits for a person (the saga waits with it). Each poll asks the Temporal server for one
count (visibility); only when few writes are left moving are they listed, never one status query
per write per poll. What is still moving at the deadline is diagnosed from Temporal itself: the
pending activity (attempt, last failure) or the timer the write sleeps on between attempts.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from temporalio.api.enums.v1 import EventType, PendingActivityState

from workers.client import NoWorker, WritebackClient
from workflows.contract import WriteState

WAITING_STATES = ("pending_confirmation", "conflict", "mismatch", "compensation_failed")
MOVING = "ExecutionStatus = 'Running' AND " + " AND ".join(
    f"WritebackState != '{state}'" for state in WAITING_STATES
)
WAITING = (
    "ExecutionStatus = 'Running' AND ("
    + " OR ".join(f"WritebackState = '{state}'" for state in WAITING_STATES)
    + ")"
)
#: Below this many moving workflows, a poll lists them (to tell ours and blocked sagas apart).
LIST_BELOW = 300
POLL_SECONDS = 1.0


@dataclass
class Tracked:
    writes: set[str]
    sagas: dict[str, set[str]]
    """Saga workflow id -> the workflow ids of its steps' writes."""


@dataclass
class SettleLog:
    polls: int = 0
    poll_seconds: float = 0.0
    moving: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since the wait began, workflows moving), one sample per ten polls."""


async def moving(client: WritebackClient, tracked: Tracked) -> set[str] | int:
    """Our writes and sagas still on their way: their ids, or only their count when many."""
    count = (await client.temporal.count_workflows(MOVING)).count
    if count == 0:
        return set()
    if count > LIST_BELOW:
        return count
    running = {e.id async for e in client.temporal.list_workflows(MOVING)}
    waiting = {e.id async for e in client.temporal.list_workflows(WAITING)}
    ours = {w for w in running if w in tracked.writes}
    ours |= {s for s in running if s in tracked.sagas and not tracked.sagas[s] & waiting}
    return ours


async def settle(
    client: WritebackClient, tracked: Tracked, deadline_seconds: float, log: SettleLog
) -> set[str]:
    """Wait until nothing of ours moves; what still moves at the deadline."""
    started = time.monotonic()
    while True:
        asked = time.monotonic()
        left = await moving(client, tracked)
        log.polls += 1
        log.poll_seconds += time.monotonic() - asked
        size = left if isinstance(left, int) else len(left)
        if log.polls % 10 == 1:
            log.moving.append((round(asked - started, 1), size))
        if not size:
            return set()
        if time.monotonic() - started > deadline_seconds:
            if isinstance(left, int):  # too many to have listed: list them now
                left = {e.id async for e in client.temporal.list_workflows(MOVING)}
                left &= tracked.writes | set(tracked.sagas)
            return left
        await asyncio.sleep(POLL_SECONDS)


async def drain(ehr: httpx.AsyncClient, tenants: set[str], within: float) -> float:
    """Wait until the EHR serves no request of these tenants (late commits have landed), so that
    the audit reads a file nothing is still about to change. Seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        busy = (await ehr.get("/_admin/in-flight")).json()
        if not tenants & set(busy):
            return round(time.monotonic() - started, 1)
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the EHR still serves requests of {sorted(tenants)} after {within} s")


async def diagnose(client: WritebackClient, workflow_id: str) -> str:
    """Why a running write is not settled: its pending activity or the timer it sleeps on (for a
    saga: the step it is writing)."""
    if workflow_id.startswith("wb-saga:"):
        try:
            saga = await client.saga(workflow_id)
        except NoWorker:  # an overloaded worker did not answer the query in time
            return "no worker answered its status query"
        for step in saga.steps:
            if step.state is WriteState.IN_FLIGHT:
                return f"step {step.name}: {await diagnose(client, step.write_id)}"
        return f"settled just after the deadline ({saga.state.value})"
    handle = client.temporal.get_workflow_handle(workflow_id)
    now = datetime.now(UTC)
    parts = []
    try:
        status = await client.status(workflow_id)
        if status.state.is_settled:
            return f"settled just after the deadline ({status.state.value})"
        parts.append(f"state {status.state.value}, {status.attempts} attempts")
        if status.ehr_log:
            parts.append(f"last: {status.ehr_log[-1].outcome[:80]}")
    except Exception as exc:  # a saga or a write without a worker: still diagnose from Temporal
        parts.append(f"status: {type(exc).__name__}")
    raw = (await handle.describe()).raw_description
    for activity in raw.pending_activities:
        state = PendingActivityState.Name(activity.state).removeprefix("PENDING_ACTIVITY_STATE_")
        parts.append(
            f"activity {activity.activity_type.name} attempt {activity.attempt} {state.lower()}"
        )
    timers: dict[str, tuple[datetime, float]] = {}
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            attrs = event.timer_started_event_attributes
            timers[attrs.timer_id] = (
                event.event_time.ToDatetime(UTC),
                attrs.start_to_fire_timeout.ToTimedelta().total_seconds(),
            )
        elif event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            timers.pop(event.timer_fired_event_attributes.timer_id, None)
    for started_at, seconds in timers.values():
        due = (started_at - now).total_seconds() + seconds
        parts.append(f"sleeping on a {seconds:.0f} s timer, due in {due:.0f} s")
    return "; ".join(parts)
