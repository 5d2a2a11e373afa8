"""Replay tests for reconciliation: a sweep that raised a finding, and the finding a person
settled (``record_histories.py sweep``), must replay on the current code."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workers.worker import workflow_runner
from workflows.reconcile_finding import ReconcileFinding
from workflows.reconcile_sweep import ReconcileSweep

HISTORIES = sorted((Path(__file__).parent / "sweep_histories").glob("*.json"))
RECORDED = {path.stem: path.read_text() for path in HISTORIES}


def test_a_sweep_and_its_finding_have_recorded_histories() -> None:
    assert set(RECORDED) >= {"sweep_found_drift", "finding_acknowledged"}


@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_recorded_reconciliation_history_replays_on_current_code(name: str) -> None:
    history = WorkflowHistory.from_json(f"replay-sweep-{name}", RECORDED[name])
    replayer = Replayer(
        workflows=[ReconcileSweep, ReconcileFinding],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )
    await replayer.replay_workflow(history)
