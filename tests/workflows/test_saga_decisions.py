"""Decisions sent to a saga while it is compensating are refused at once, saying why, never
accepted to wait for a turn (a decision is taken only while the saga waits for one, in the state
its validator saw: workflows/decisions.py). The decision that settles a saga gets its answer.

Time-skipping server, real worker, real sandbox EHR (slowed down so that the test can speak while
the saga works)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from support.sagas import REFUSE_NOTIFY, decision, refuse_withdrawal, saga, settled, step_of
from temporalio.client import WorkflowUpdateStage

from workers import samples
from workers.client import DecisionRefused, WritebackClient
from workflows.clinical_saga import ClinicalSaga
from workflows.contract import ResolutionAction, WriteState

SLOW_EHR_MS = 1000


async def test_a_decision_sent_while_the_saga_withdraws_its_steps_is_refused_saying_so(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    await faults.post(
        "/_admin/faults/demo-r4", json={"queue": [REFUSE_NOTIFY], "latency_ms": SLOW_EHR_MS}
    )
    command = saga("demo-r4", key, samples.referral("decisions-pt-1"))
    await writeback.submit_saga(command)
    for _ in range(600):  # until the Communication is refused: the saga starts withdrawing
        status = await writeback.saga(command.workflow_id)
        if step_of(status, "notify").state is WriteState.REJECTED:
            break
        await asyncio.sleep(0.05)
    assert status.state is WriteState.IN_FLIGHT, "the test came too late: the saga settled"

    with pytest.raises(DecisionRefused, match="withdrawing its steps"):
        await writeback.resolve(command.workflow_id, decision(ResolutionAction.CONFIRM), key)
    done = await settled(writeback, command.workflow_id)
    assert done.state is WriteState.COMPENSATED, done.reason
    assert not any("confirm by" in (t.detail or "") for t in done.transitions)


async def test_a_decision_sent_while_another_is_acted_on_is_refused_and_the_first_answers(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    queue = [REFUSE_NOTIFY, refuse_withdrawal("ServiceRequest")]
    await faults.post("/_admin/faults/demo-r4", json={"queue": queue})
    command = saga("demo-r4", key, samples.referral("decisions-pt-2"))
    await writeback.submit_saga(command)
    assert (await settled(writeback, command.workflow_id)).state is WriteState.COMPENSATION_FAILED

    await faults.post("/_admin/faults/demo-r4", json={"latency_ms": SLOW_EHR_MS})
    handle = writeback.temporal.get_workflow_handle_for(ClinicalSaga.run, command.workflow_id)
    retrying = await handle.start_update(
        ClinicalSaga.resolve,
        decision(ResolutionAction.RETRY),
        id=f"{key}-retry",
        wait_for_stage=WorkflowUpdateStage.ACCEPTED,
    )
    with pytest.raises(DecisionRefused, match="already being applied"):
        await writeback.resolve(
            command.workflow_id, decision(ResolutionAction.ABANDON), f"{key}-abandon"
        )
    answer = await asyncio.wait_for(retrying.result(), 60)
    assert answer.state is WriteState.COMPENSATED, answer.reason
    assert step_of(answer, "request").compensation == "withdrawn"
