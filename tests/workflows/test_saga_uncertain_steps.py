"""Saga steps whose own write did not end verified, but which the EHR may hold all the same.

- The EHR holds it (the step's status names a resource): its read-back differed (schema drift:
  an extension dropped on store; a mismatch: the identifier dropped) and the write ended without
  ``verified``. Compensation withdraws it with the others; the saga never ends ``compensated``
  (or ``rejected``, "nothing was written") with it still in the chart.
- Its attempt went unanswered and nothing was found since (the write was abandoned): it may still
  land. The saga parks in ``compensation_failed`` naming the step, looks again on ``reverify``
  or ``retry`` (and withdraws what it finds), and settles on ``confirm`` once a search for the
  step's identifier agrees that it is not in the chart.

Time-skipping server, real worker, real sandbox EHR."""

from __future__ import annotations

import httpx
import pytest
from support.sagas import (
    abandon_if_waiting,
    decision,
    read,
    saga,
    settled,
    step_of,
    stored,
)
from support.sandbox_process import SandboxProcess

from adapters.fhir_r4 import COMMAND_IDENTIFIER_SYSTEM
from workers import samples
from workers.client import WritebackClient
from workflows.contract import ResolutionAction, Urgency, WriteState, WriteStatus
from workflows.saga_contract import SagaCommand, SagaStatus, SagaStep

LEGACY_EXTENSION = "http://example.org/fhir/StructureDefinition/legacy-flag"
DRIFT = {"drift": {"removed_extensions": [LEGACY_EXTENSION]}}
UNANSWERED_TASK = {"kind": "connection_reset", "method": "POST", "type": "Task"}
UNAVAILABLE_TASK = {"kind": "status", "status": 503, "method": "POST", "type": "Task"}


def with_legacy_extension(step: SagaStep) -> SagaStep:
    extension = [{"url": LEGACY_EXTENSION, "valueBoolean": True}]
    return SagaStep(name=step.name, resource=step.resource | {"extension": extension})


async def run_through(
    writeback: WritebackClient, command: SagaCommand, step: str
) -> tuple[SagaStatus, WriteStatus]:
    """Submit; when ``step``'s own write waits for a person, a person abandons it; the saga's
    settled status and the step write's final status."""
    await writeback.submit_saga(command)
    write = await abandon_if_waiting(writeback, f"wb:{command.tenant}:{command.step_key(step)}")
    await settled(writeback, command.workflow_id)
    return await writeback.saga(command.workflow_id), write


@pytest.mark.parametrize("drifting", ["task", "request"])
async def test_a_step_stored_without_an_extension_is_withdrawn_with_the_rest(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    key: str,
    drifting: str,
) -> None:
    """The EHR drops the step's extension on store: its write ends without ``verified`` (today
    ``rejected`` with the resource named; ``pending_confirmation`` once drift waits for a person,
    and a person abandons it) but the resource is in the chart."""
    await faults.post("/_admin/faults/demo-r4", json=DRIFT)
    steps = [
        with_legacy_extension(step) if step.name == drifting else step
        for step in samples.referral("drift-saga-pt")
    ]
    command = saga("demo-r4", key, steps)
    status, write = await run_through(writeback, command, drifting)

    assert write.resource and not write.state.is_in_chart
    assert status.state is WriteState.COMPENSATED, status.reason
    assert step_of(status, drifting).compensation == "withdrawn"
    assert write.resource in (status.transitions[-1].detail or "")
    withdrawn = {"request": "revoked", "task": "cancelled"}
    for name in ("request", "task")[: 2 if drifting == "task" else 1]:
        assert [r["status"] for r in stored(ehr, command, name)] == [withdrawn[name]], name
    assert stored(ehr, command, "notify") == []


async def test_a_step_whose_read_back_differed_is_withdrawn_after_its_write_is_abandoned(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    """The EHR stores the Task without our identifier: read-back differs, the Task's write waits
    for a person with the resource named, who abandons it; the saga withdraws that Task."""
    drop = {"kind": "drop_identifier", "method": "POST", "type": "Task"}
    await faults.post("/_admin/faults/demo-r4", json={"queue": [drop]})
    command = saga("demo-r4", key, samples.referral("mismatch-saga-pt"))
    status, write = await run_through(writeback, command, "task")

    assert write.state is WriteState.ABANDONED and write.resource
    assert status.state is WriteState.COMPENSATED, status.reason
    assert step_of(status, "task").compensation == "withdrawn"
    task = await read(faults, "demo-r4", write.resource)
    assert task is not None and task["status"] == "cancelled"
    request = await read(faults, "demo-r4", str(step_of(status, "request").resource))
    assert request is not None and request["status"] == "revoked"


async def unanswered_task_abandoned(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> tuple[SagaCommand, SagaStatus]:
    """A stat referral whose Task create goes unanswered, then meets 503s until the budget is
    spent; a person abandons the Task's write. Nothing was committed (the sandbox reset the
    connection before storing), but nobody can know that."""
    queue = [UNANSWERED_TASK] + [UNAVAILABLE_TASK] * 4
    await faults.post("/_admin/faults/fast-r4", json={"queue": queue})
    command = saga("fast-r4", key, samples.referral("unanswered-pt"), urgency=Urgency.STAT)
    status, write = await run_through(writeback, command, "task")
    assert write.state is WriteState.ABANDONED and write.resource is None
    assert write.ehr_log[0].outcome.startswith("ambiguous")
    return command, status


async def test_a_step_whose_unanswered_attempt_may_still_land_keeps_the_saga_waiting(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    command, status = await unanswered_task_abandoned(writeback, faults, key)

    assert status.state is WriteState.COMPENSATION_FAILED, status.reason
    assert "step 'task'" in (status.reason or "") and "may still land" in (status.reason or "")
    assert step_of(status, "request").compensation == "withdrawn"
    task = step_of(status, "task")
    assert task.compensation == "failed" and "may still land" in (task.detail or "")

    # a reverify looks again: still nothing, still waiting
    again = await writeback.resolve(command.workflow_id, decision(ResolutionAction.REVERIFY), "r1")
    assert again.state is WriteState.COMPENSATION_FAILED
    assert "not found" in (step_of(await writeback.saga(command.workflow_id), "task").detail or "")

    # the person checks the chart, finds nothing, confirms; our search agrees
    done = await writeback.resolve(command.workflow_id, decision(ResolutionAction.CONFIRM), "c1")
    assert done.state is WriteState.COMPENSATED, done.reason
    task = step_of(await writeback.saga(command.workflow_id), "task")
    assert task.compensation == "not_found" and task.resource is None


@pytest.mark.parametrize("action", [ResolutionAction.REVERIFY, ResolutionAction.RETRY])
async def test_an_attempt_that_lands_late_is_found_and_withdrawn(
    writeback: WritebackClient,
    ehr: SandboxProcess,
    faults: httpx.AsyncClient,
    key: str,
    action: ResolutionAction,
) -> None:
    command, status = await unanswered_task_abandoned(writeback, faults, key)
    assert status.state is WriteState.COMPENSATION_FAILED, status.reason
    # the lost attempt lands after all (e.g. an interface engine delivers it late)
    task = next(step for step in command.steps if step.name == "task").resource
    identifier = {
        "system": COMMAND_IDENTIFIER_SYSTEM,
        "value": f"fast-r4:{command.step_key('task')}",
    }
    focus = {"reference": str(step_of(status, "request").resource)}
    landed = await faults.post(
        "/fhir/fast-r4/Task", json=task | {"focus": focus, "identifier": [identifier]}
    )
    assert landed.status_code == 201, landed.text

    done = await writeback.resolve(command.workflow_id, decision(action), f"{action.value}-1")
    assert done.state is WriteState.COMPENSATED, done.reason
    found = step_of(await writeback.saga(command.workflow_id), "task")
    assert found.compensation == "withdrawn" and found.resource
    assert [t["status"] for t in stored(ehr, command, "task")] == ["cancelled"]
