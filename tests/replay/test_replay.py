"""Replay tests: recorded histories of the released workflow code must replay on the current code.

``histories/*.json`` come from ``record_histories.py`` run on the release. A change to
ClinicalWrite's command sequence that is not guarded by ``workflow.patched`` makes these fail; the
throwaway-workflow tests below show that the check really catches such a change and that the
patch marker is what makes it pass.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.client import WorkflowHistory
from temporalio.common import RawValue
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

from workers.worker import workflow_runner
from workflows.clinical_write import ClinicalWrite
from workflows.contract import WriteStatus
from workflows.write_start import NO_ARGUMENT

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))
RECORDED = {path.stem: path.read_text() for path in HISTORIES}


def _replayer(*workflows: type) -> Replayer:
    return Replayer(
        workflows=list(workflows),
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(),
    )


def test_recorded_histories_exist() -> None:
    assert len(HISTORIES) >= 3
    assert "waited_then_resolved" in RECORDED  # a write a person resolved


@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_released_clinical_write_history_replays_on_current_code(name: str) -> None:
    history = WorkflowHistory.from_json(f"replay-{name}", RECORDED[name])
    await _replayer(ClinicalWrite).replay_workflow(history)


# --- the check catches an unguarded change: a throwaway workflow in three versions ---------------


@activity.defn
async def step_one(value: str) -> str:
    return f"one:{value}"


@activity.defn
async def step_two(value: str) -> str:
    return f"two:{value}"


_OPTS = {"start_to_close_timeout": timedelta(seconds=10)}


@workflow.defn(name="Throwaway", sandboxed=False)
class ThrowawayV1:
    @workflow.run
    async def run(self, value: str) -> str:
        return await workflow.execute_activity(step_one, value, **_OPTS)  # type: ignore[arg-type]


@workflow.defn(name="Throwaway", sandboxed=False)
class ThrowawayUnguarded:
    """V2 adds a step before the old one, with no version marker."""

    @workflow.run
    async def run(self, value: str) -> str:
        value = await workflow.execute_activity(step_two, value, **_OPTS)  # type: ignore[arg-type]
        return await workflow.execute_activity(step_one, value, **_OPTS)  # type: ignore[arg-type]


@workflow.defn(name="Throwaway", sandboxed=False)
class ThrowawayPatched:
    """The same change, guarded: histories recorded before it keep the old command sequence."""

    @workflow.run
    async def run(self, value: str) -> str:
        if workflow.patched("throwaway-step-two"):
            value = await workflow.execute_activity(step_two, value, **_OPTS)  # type: ignore[arg-type]
        return await workflow.execute_activity(step_one, value, **_OPTS)  # type: ignore[arg-type]


@pytest.fixture
async def v1_history(time_skipping: WorkflowEnvironment) -> WorkflowHistory:
    queue = f"throwaway-{uuid.uuid4().hex[:8]}"
    async with Worker(
        time_skipping.client, task_queue=queue, workflows=[ThrowawayV1], activities=[step_one]
    ):
        handle = await time_skipping.client.start_workflow(
            ThrowawayV1.run, "x", id=f"throwaway-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        assert await handle.result() == "one:x"
        return await handle.fetch_history()


def _throwaway_replayer(env: WorkflowEnvironment, workflow: type) -> Replayer:
    """Replays with the converter that recorded the history (payloads are encrypted)."""
    return Replayer(workflows=[workflow], data_converter=env.client.data_converter)


async def test_unguarded_command_change_fails_replay(
    time_skipping: WorkflowEnvironment, v1_history: WorkflowHistory
) -> None:
    with pytest.raises(NondeterminismError):
        await _throwaway_replayer(time_skipping, ThrowawayUnguarded).replay_workflow(v1_history)


async def test_patched_command_change_replays(
    time_skipping: WorkflowEnvironment, v1_history: WorkflowHistory
) -> None:
    await _throwaway_replayer(time_skipping, ThrowawayPatched).replay_workflow(v1_history)


# --- the same on ClinicalWrite itself: a modified copy against the recorded release ------------


@workflow.defn(name="ClinicalWrite", sandboxed=False)
class ClinicalWriteUnguarded(ClinicalWrite):
    """A 'next release' that starts every write with a new step and no version marker."""

    @workflow.run
    async def run(self, start: RawValue = NO_ARGUMENT) -> WriteStatus:
        await workflow.sleep(timedelta(seconds=1))
        return await super().run(start)


@workflow.defn(name="ClinicalWrite", sandboxed=False)
class ClinicalWritePatched(ClinicalWrite):
    """The same change behind ``workflow.patched``: recorded writes replay the old sequence."""

    @workflow.run
    async def run(self, start: RawValue = NO_ARGUMENT) -> WriteStatus:
        if workflow.patched("pause-before-validate"):
            await workflow.sleep(timedelta(seconds=1))
        return await super().run(start)


def _released(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"replay-{name}", RECORDED[name])


@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_unguarded_change_to_clinical_write_fails_replay_of_the_release(name: str) -> None:
    with pytest.raises(NondeterminismError):
        await _replayer(ClinicalWriteUnguarded).replay_workflow(_released(name))


@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_patched_change_to_clinical_write_replays_the_release(name: str) -> None:
    await _replayer(ClinicalWritePatched).replay_workflow(_released(name))
