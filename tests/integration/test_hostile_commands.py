"""Hostile commands end to end (property-based): mutated heart-rate commands (tests/support/
hostile.py) go through WritebackClient or, bypassing it, straight to Temporal as another tool
holding the payload keys would send them (so does a body the client cannot even build as a
WriteCommand; a tool without the keys gets nothing read at all: the codec refuses plain
payloads, tests/security/test_codec.py, and so do the `temporal` CLI starts below), to a real
`writeback worker` process on the Temporal dev server, writing into the sandbox EHR. Every
command is refused by the client (naming a limit and a path), or its write ends ``rejected``
with a reason or ``verified``: none stays Running, no reason or transition quotes the input, the
worker's log neither, and the worker process never restarts.

CI runs HOSTILE_COMMANDS=150 (the default). Locally, the big run:

    HOSTILE_COMMANDS=10000 HOSTILE_CONCURRENCY=4 .venv/bin/python -m pytest -p no:cacheprovider \
        tests/integration/test_hostile_commands.py -s --timeout 0

prints the outcome counts at the end (``hostile commands: …``).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from support.hostile import CANARY, TAKEN_AT, Case, hostile_cases
from support.temporal import temporal_address
from support.worker_process import WorkerProcess
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from workers import samples
from workers.client import NoWorker, WritebackClient
from workers.settings import venv_binary
from workers.temporal_client import default_data_converter
from workflows.contract import WriteCommand, WriteState, workflow_id_for
from workflows.input_limits import CommandRefused

pytestmark = pytest.mark.integration

COMMANDS = int(os.environ.get("HOSTILE_COMMANDS", "150"))
CONCURRENCY = int(os.environ.get("HOSTILE_CONCURRENCY", "10"))
BATCH = 25
HEART_RATE = samples.heart_rate("typed", 72, TAKEN_AT)
#: How long one write may take to end (a loaded machine; the EHR answers in milliseconds).
SETTLE_SECONDS = 120


@dataclass
class Stack:
    client: WritebackClient
    by_hand: Client  # not WritebackClient: another tool, with the codec (or nothing is read)
    worker: WorkerProcess
    log: Path
    outcomes: collections.Counter[str]
    started: float


@pytest.fixture(scope="module")
def worker(
    tenants_file: Path, dev_server: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WorkerProcess, Path, str]]:
    task_queue = f"hostile-{uuid.uuid4().hex[:8]}"
    log = tmp_path_factory.mktemp("hostile") / "worker.log"
    process = WorkerProcess(
        temporal_address(dev_server), task_queue, tenants_file, log, {"WRITEBACK_LOG_LEVEL": "INFO"}
    )
    yield process, log, task_queue
    process.stop()


@pytest.fixture(scope="module")
async def stack(
    dev_server: WorkflowEnvironment, worker: tuple[WorkerProcess, Path, str]
) -> AsyncIterator[Stack]:
    process, log, task_queue = worker
    by_hand = await Client.connect(
        temporal_address(dev_server), data_converter=default_data_converter()
    )
    client = WritebackClient(dev_server.client, task_queue)
    yield Stack(client, by_hand, process, log, collections.Counter(), time.monotonic())


async def settle(client: WritebackClient, workflow_id: str) -> WriteState:
    """Wait until the write's workflow completed; its final state."""
    deadline = time.monotonic() + SETTLE_SECONDS
    handle = client.temporal.get_workflow_handle(workflow_id)
    while True:
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            break
        if time.monotonic() > deadline:
            try:
                state = (await client.status(workflow_id)).state.value
            except (NoWorker, RPCError) as exc:  # e.g. its workflow task keeps failing
                state = str(exc)
            raise AssertionError(f"{workflow_id} still Running after {SETTLE_SECONDS} s: {state}")
        await asyncio.sleep(0.2)
    assert description.status == WorkflowExecutionStatus.COMPLETED, description.status
    return (await client.status(workflow_id)).state


async def run_case(stack: Stack, case: Case) -> str:
    """Send one case; the outcome's name (the assertions about it are made here)."""
    key = f"fz-{uuid.uuid4().hex[:16]}"
    workflow_id = workflow_id_for("demo-r4", key)
    route = case.route
    if route == "client":
        try:
            command = WriteCommand(**{**case.body, "idempotency_key": key})
        except ValidationError:
            route = "by_hand"  # the caller cannot even build it: another tool sends it
        else:
            try:
                await stack.client.submit(command)
            except CommandRefused as refused:
                assert CANARY not in str(refused), case.mutations
                return f"refused by the client: {refused.code.split(' ')[0]}"
            workflow_id = command.workflow_id
    if route == "by_hand":
        try:
            await stack.by_hand.start_workflow(
                "ClinicalWrite",
                args=case.argument(key),
                id=workflow_id,
                task_queue=stack.client.task_queue,
            )
        except RPCError as exc:
            # over the server's payload limit (2 MB) or gRPC's message limit (4 MB)
            assert "size" in exc.message or "larger than max" in exc.message, exc.message
            return "refused by the server (size)"
    state = await settle(stack.client, workflow_id)
    status = await stack.client.status(workflow_id)
    texts = [status.reason or "", *(t.detail or "" for t in status.transitions)]
    for text in texts:
        assert CANARY not in text, (case.mutations, text)
        assert not any(s in text for s in case.strings()), (case.mutations, text)
    how = "" if route == case.route else "no WriteCommand, by hand: "
    if state is WriteState.REJECTED:
        assert status.error_class and status.reason, (case.mutations, status)
        return f"{how}rejected ({status.error_class})"
    assert state is WriteState.VERIFIED, (case.mutations, state, status.reason)
    return f"{how}verified"


async def run_batch(stack: Stack, cases: list[Case]) -> None:
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(case: Case) -> str:
        async with slots:
            return await run_case(stack, case)

    for outcome in await asyncio.gather(*(one(case) for case in cases)):
        stack.outcomes[outcome] += 1
    log = stack.log.read_text(errors="replace")
    assert stack.worker.proc.poll() is None, "the worker process died"
    assert log.count("worker ready") == 1, "the worker restarted"
    assert "Failed decoding" not in log and "Failed activation" not in log
    assert CANARY not in log


@pytest.mark.timeout(max(300, COMMANDS))
@settings(
    max_examples=max(1, COMMANDS // BATCH),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    phases=[Phase.generate],  # a batch is ~25 real writes: shrinking would take hours; a
    # failure names its case's mutations instead
)
@given(cases=st.lists(hostile_cases(), min_size=BATCH, max_size=BATCH))
async def test_hostile_commands_end_rejected_or_verified_never_running(
    stack: Stack, cases: list[Case]
) -> None:
    await run_batch(stack, cases)


def test_every_hostile_command_was_sent(stack: Stack) -> None:
    """After the property: how many went where (printed with -s; the big run's figures)."""
    if not stack.outcomes:
        pytest.skip("the property test did not run in this session")
    total = sum(stack.outcomes.values())
    summary = ", ".join(f"{n} {outcome}" for outcome, n in stack.outcomes.most_common())
    print(f"\nhostile commands: {total} in {time.monotonic() - stack.started:.0f} s: {summary}")
    assert total >= COMMANDS - BATCH


# --- `temporal workflow start`: the real CLI, a hand-written input --------------------------


def temporal_start(address: str, task_queue: str, workflow_id: str, *inputs: str) -> None:
    done = subprocess.run(
        [
            str(venv_binary("temporal")),
            "workflow",
            "start",
            "--type",
            "ClinicalWrite",
            "--task-queue",
            task_queue,
            "--workflow-id",
            workflow_id,
            "--address",
            address,
            *(arg for text in inputs for arg in ("--input", text)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def hand_typed(key: str, resource: str) -> str:
    return f'{{"tenant": "demo-r4", "idempotency_key": "{key}", "resource": {resource}}}'


@pytest.mark.parametrize(
    ("typed", "state", "reason"),
    [
        # the CLI has no payload keys: what it types is plain JSON, which no worker reads
        # (issue #17, finding 4); before, a well-formed command was written
        (
            lambda key: [hand_typed(key, json.dumps(HEART_RATE))],
            "rejected",
            "command: not_encrypted",
        ),
        (lambda key: ['{"tenant": 5, "resource": "x"}'], "rejected", "command: not_encrypted"),
        (lambda key: [], "rejected", "command: missing"),
        (
            lambda key: [hand_typed(key, "[" * 300 + "]" * 300)],
            "rejected",
            "command: not_encrypted",
        ),
    ],
)
async def test_a_start_typed_at_the_temporal_cli_ends_rejected_or_verified(
    stack: Stack, dev_server: WorkflowEnvironment, typed: Any, state: str, reason: str | None
) -> None:
    key = f"cli-{uuid.uuid4().hex[:12]}"
    workflow_id = workflow_id_for("demo-r4", key)
    inputs = typed(key)
    await asyncio.to_thread(
        temporal_start, temporal_address(dev_server), stack.client.task_queue, workflow_id, *inputs
    )
    assert (await settle(stack.client, workflow_id)).value == state
    assert (await stack.client.status(workflow_id)).reason == reason
