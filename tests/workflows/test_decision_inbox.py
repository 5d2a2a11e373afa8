"""workflows/decisions.py: the guards a workflow that does other work while a person may decide
(a re-check, a compensation) uses so that a decision is never stranded: accepted, then never
taken, or taken in a state it was not validated for.

A probe workflow waits for a decision with a timeout and, on the timeout, re-checks (an activity
the test holds open) and may then leave its decision loop, as ClinicalWrite's automatic re-checks
do. Time-skipping server; no EHR."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from workflows.contract import Resolution, ResolutionAction
from workflows.decisions import DecisionInbox

RECHECK_STARTED = asyncio.Event()
RECHECK_MAY_END = asyncio.Event()


@activity.defn
async def recheck() -> str:
    """Stands for a read of the EHR: it finds the write settled, once the test lets it."""
    RECHECK_STARTED.set()
    await RECHECK_MAY_END.wait()
    return "settled"


@workflow.defn(name="InboxProbe", sandboxed=False)
class InboxProbe:
    @workflow.init
    def __init__(self, guarded: bool) -> None:
        self._guarded = guarded
        self._inbox = DecisionInbox()
        self._state = "waiting"
        self._applied: list[str] = []

    @workflow.run
    async def run(self, guarded: bool) -> list[str]:
        while self._state == "waiting":
            try:
                async with self._inbox.next(timedelta(minutes=1)) as decision:
                    self._applied.append(decision.action.value)
                    self._state = "decided"
            except TimeoutError:
                self._state = await workflow.execute_activity(
                    recheck, start_to_close_timeout=timedelta(minutes=5)
                )
        self._inbox.refuse_pending(f"not applied: the probe is {self._state}")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._applied

    @workflow.update
    async def resolve(self, resolution: Resolution) -> str:
        await self._inbox.deliver(resolution)
        return self._state

    @resolve.validator
    def _allowed(self, resolution: Resolution) -> None:
        if self._state != "waiting":
            raise ValueError(f"probe is {self._state}")
        if self._inbox.busy:
            raise ValueError("a decision is already being applied")
        if self._guarded and not self._inbox.waiting:
            raise ValueError("re-checking, not waiting for a decision: send it again shortly")


DECISION = Resolution(action=ResolutionAction.REVERIFY, by="op-7", reason="test reverify")


@pytest.fixture
async def rechecking(
    time_skipping: WorkflowEnvironment, request: pytest.FixtureRequest
) -> AsyncIterator[WorkflowHandle[InboxProbe, list[str]]]:
    """A probe (``guarded`` from the test's parameter) in the middle of its re-check."""
    RECHECK_STARTED.clear()
    RECHECK_MAY_END.clear()
    queue = f"inbox-{uuid.uuid4().hex[:8]}"
    client = time_skipping.client
    async with Worker(client, task_queue=queue, workflows=[InboxProbe], activities=[recheck]):
        handle = await client.start_workflow(
            InboxProbe.run, request.param, id=f"inbox-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        # skip past the wait's timeout (time stops skipping while the re-check runs)
        skipping = asyncio.create_task(time_skipping.sleep(timedelta(minutes=2)))
        await asyncio.wait_for(RECHECK_STARTED.wait(), timeout=30)
        yield handle
        RECHECK_MAY_END.set()
        skipping.cancel()
        with contextlib.suppress(asyncio.CancelledError, RPCError):
            await skipping


@pytest.mark.parametrize("rechecking", [True], indirect=True)
async def test_a_validator_using_waiting_refuses_a_decision_during_the_recheck(
    rechecking: WorkflowHandle[InboxProbe, list[str]],
) -> None:
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await asyncio.wait_for(rechecking.execute_update(InboxProbe.resolve, DECISION), 30)
    assert "re-checking, not waiting for a decision" in str(refused.value.cause)
    RECHECK_MAY_END.set()
    assert await asyncio.wait_for(rechecking.result(), 30) == []


@pytest.mark.parametrize("rechecking", [False], indirect=True)
async def test_a_decision_accepted_but_never_taken_is_refused_when_the_loop_ends(
    rechecking: WorkflowHandle[InboxProbe, list[str]],
) -> None:
    """Without that guard the decision is accepted during the re-check; the re-check settles
    the probe, which leaves its loop: the decision's update fails saying why, instead of hanging
    (or ending in 'workflow execution already completed')."""
    accepted = await rechecking.start_update(
        InboxProbe.resolve, DECISION, wait_for_stage=WorkflowUpdateStage.ACCEPTED
    )
    RECHECK_MAY_END.set()
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await asyncio.wait_for(accepted.result(), 30)
    assert "not applied: the probe is settled" in str(refused.value.cause)
    assert await asyncio.wait_for(rechecking.result(), 30) == []
