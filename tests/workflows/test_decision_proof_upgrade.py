"""A write already waiting when the release that proves decisions is deployed, which took a
decision before it: the decisions it takes after the release are proved, and its history replays
(workflows/person_waits.py ``DECISIONS_PROVED``: one patch id per decision, since Temporal
memoizes a patch for the whole run).

The release is simulated within one run: the worker answers "not yet" for the first decision's
patch (``patch_activation_callback``), as the code before the release, which had no such patch,
would have run it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support.workers import running_worker
from support.workflow_runs import command, wait_until_settled
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import PatchActivationInput, Replayer, Worker

import workers.worker
from adapters.tenants import TenantRegistry
from workers.client import WritebackClient
from workers.temporal_client import default_data_converter
from workers.worker import workflow_runner
from workflows.clinical_write import ClinicalWrite
from workflows.contract import Resolution, ResolutionAction, Urgency, WriteState


def before_the_release(patch: PatchActivationInput) -> bool:
    return patch.patch_id != "decisions-proved-1"


class ReleasedMidRun(Worker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("workflows"):
            kwargs["patch_activation_callback"] = before_the_release
        super().__init__(*args, **kwargs)


@pytest.fixture
async def upgraded(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[WritebackClient]:
    monkeypatch.setattr(workers.worker, "Worker", ReleasedMidRun)
    async with running_worker(time_skipping.client, tenants) as client:
        yield client


async def test_decisions_after_the_release_are_proved_and_the_run_replays(
    time_skipping: WorkflowEnvironment,
    upgraded: WritebackClient,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    # a stat write whose 5 attempts all meet a 503: it waits for a person, nothing in the EHR
    await faults.post(
        "/_admin/faults/demo-r4", json={"queue": [{"kind": "status", "status": 503}] * 5}
    )
    cmd = command("demo-r4", key, urgency=Urgency.STAT)
    await upgraded.submit(cmd)
    assert (await wait_until_settled(time_skipping, upgraded, cmd.workflow_id)).state is (
        WriteState.PENDING_CONFIRMATION
    )
    unsigned = time_skipping.client.get_workflow_handle_for(ClinicalWrite.run, cmd.workflow_id)
    look = Resolution(action=ResolutionAction.REVERIFY, by="op-1", reason="look again")

    # before the release: taken as it comes (the EHR shows nothing: the write keeps waiting)
    taken = await unsigned.execute_update(ClinicalWrite.resolve, look, id=f"{key}-1")
    assert taken.state is WriteState.PENDING_CONFIRMATION
    # after it: unproved, refused
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await unsigned.execute_update(ClinicalWrite.resolve, look, id=f"{key}-2")
    assert "operator not proved: no caller credential" in str(refused.value.cause)
    # signed by the operator: taken
    abandon = Resolution(action=ResolutionAction.ABANDON, by="op-1", reason="re-entered")
    assert (await upgraded.resolve(cmd.workflow_id, abandon, f"{key}-3")).state is (
        WriteState.ABANDONED
    )

    history = await unsigned.fetch_history()
    await Replayer(
        workflows=[ClinicalWrite],
        data_converter=default_data_converter(),
        workflow_runner=workflow_runner(),
    ).replay_workflow(history)
