"""Replay tests for ClinicalSaga: histories recorded on the release before the saga-safety change
(``record_saga_histories.py`` at a335e58) must replay on the current code. The change issues new
commands (a confirm reads each step back; steps the EHR may hold are withdrawn or looked for; a
saga that cannot be sure parks instead of ending), each behind ``workflow.patched``: these
histories are the sagas already running when it is deployed."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workers.worker import workflow_runner
from workflows.clinical_saga import ClinicalSaga

HISTORIES = sorted((Path(__file__).parent / "saga_histories").glob("*.json"))
RECORDED = {path.stem: path.read_text() for path in HISTORIES}


def _replayer() -> Replayer:
    return Replayer(
        workflows=[ClinicalSaga],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )


def test_every_saga_path_has_a_recorded_history() -> None:
    assert set(RECORDED) >= {
        "verified_referral",
        "compensated_referral",
        "refused_withdrawal_retried",
        "refused_withdrawal_abandoned",
        "create_only_tenant_confirmed",
        "drifted_task_not_verified",
        "unanswered_task_abandoned",
        "compensated_notify_refused",
    }


@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_released_saga_history_replays_on_current_code(name: str) -> None:
    history = WorkflowHistory.from_json(f"replay-saga-{name}", RECORDED[name])
    await _replayer().replay_workflow(history)
