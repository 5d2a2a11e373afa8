"""Hostile input at the entry of a write (time-skipping server, the real worker, the sandbox EHR):
what a worker could not decode is refused by the client, naming the limit and the element path;
whatever reaches a worker anyway — started by another tool, bypassing the client — ends
``rejected`` (error class ``validation``) with a reason made of paths and codes, never Running
with its workflow task failing forever, and never with the input's values in the worker's log.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from support.workflow_runs import command, result_of
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import RawValue
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.audit_ledger import AuditEvent
from adapters.tenants import TenantRegistry
from workers import samples
from workers.audit_cli import ledger_location, shared_ledger
from workers.client import WritebackClient
from workers.worker import ehr_http_client, running_workers
from workflows.clinical_write import ClinicalWrite, ContinuedWrite
from workflows.contract import Transition, WriteCommand, WriteState, WriteStatus, workflow_id_for
from workflows.input_limits import MAX_COMMAND_BYTES, MAX_DEPTH, MAX_STRING_CHARS, LimitExceeded

CANARY = "Zq-CANARY-7Jane-Doe"


def deep_heart_rate(levels: int) -> dict[str, Any]:
    """A heart rate whose ``extension`` nests so that the command is ``levels`` deep."""
    resource = samples.heart_rate("hostile", 72)
    value: Any = {"url": CANARY}
    depth = 3  # command -> resource -> extension list -> …
    while depth + 2 <= levels:
        value = {"url": "http://example.org/x", "extension": [value]}
        depth += 2
    resource["extension"] = [value]
    return resource


def raw_json(text: str | bytes) -> RawValue:
    """A start argument as another tool would send it: JSON text we do not let the SDK write."""
    data = text.encode() if isinstance(text, str) else text
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=data))


def hand_written(**changes: Any) -> dict[str, Any]:
    """A command as someone would type it for `temporal workflow start --input`."""
    body: dict[str, Any] = {
        "tenant": "demo-r4",
        "idempotency_key": "will-be-replaced",
        "resource": samples.heart_rate("hostile", 72),
    }
    body.update(changes)
    return body


async def start_by_hand(client: WritebackClient, key: str, *args: Any) -> WriteStatus:
    """Start ClinicalWrite by name, bypassing WritebackClient, and wait (bounded) for its end."""
    workflow_id = workflow_id_for("demo-r4", key)
    handle = await client.temporal.start_workflow(
        "ClinicalWrite", args=list(args), id=workflow_id, task_queue=client.task_queue
    )
    typed = client.temporal.get_workflow_handle_for(ClinicalWrite.run, workflow_id)
    try:
        return await asyncio.wait_for(result_of(typed), timeout=30)
    finally:
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test cleanup: the write never ended")


def too_deep_path() -> str:
    """Where ``deep_heart_rate`` first goes past MAX_DEPTH: its list at depth MAX_DEPTH + 1."""
    segments = ["resource"] + [
        ".extension" if depth % 2 else "[0]" for depth in range(3, MAX_DEPTH + 2)
    ]
    return "".join(segments)


def assert_refused(status: WriteStatus) -> None:
    assert status.state is WriteState.REJECTED
    assert status.error_class == "validation"
    assert status.reason
    assert CANARY not in status.reason and "Jane" not in status.reason
    assert [t.state for t in status.transitions] == [WriteState.REQUESTED, WriteState.REJECTED]


# --- the client refuses what a worker could not decode ------------------------------------------


async def test_the_client_refuses_nesting_a_worker_could_not_decode(
    writeback: WritebackClient, key: str
) -> None:
    cmd = command("demo-r4", key, deep_heart_rate(250))
    with pytest.raises(LimitExceeded) as refused:
        await writeback.submit(cmd)
    assert refused.value.limit == "max_depth"
    path = too_deep_path()
    assert refused.value.path == path
    assert str(refused.value).startswith(f"{path}: max_depth")
    assert CANARY not in str(refused.value)
    with pytest.raises(Exception, match="not found"):
        await writeback.temporal.get_workflow_handle(cmd.workflow_id).describe()


async def test_the_client_refuses_a_long_string_naming_its_element(
    writeback: WritebackClient, key: str
) -> None:
    resource = samples.heart_rate("hostile", 72)
    resource["note"] = [{"text": CANARY * (500_000 // len(CANARY))}]
    with pytest.raises(LimitExceeded) as refused:
        await writeback.submit(command("demo-r4", key, resource))
    assert (refused.value.limit, refused.value.path) == (
        "max_string_chars",
        "resource.note[0].text",
    )
    assert CANARY not in str(refused.value)


async def test_the_client_refuses_a_megabyte_string_by_the_total_size(
    writeback: WritebackClient, key: str
) -> None:
    resource = samples.heart_rate("hostile", 72)
    resource["note"] = [{"text": CANARY * (1_048_576 // len(CANARY) + 1)}]
    with pytest.raises(LimitExceeded) as refused:
        await writeback.submit(command("demo-r4", key, resource))
    assert (refused.value.limit, refused.value.path) == ("max_command_bytes", "command")


async def test_the_client_refuses_a_command_over_the_total_size(
    writeback: WritebackClient, key: str
) -> None:
    resource = samples.heart_rate("hostile", 72)
    chunk = MAX_STRING_CHARS // 2
    resource["note"] = [{"text": "x" * chunk} for _ in range(MAX_COMMAND_BYTES // chunk + 1)]
    with pytest.raises(LimitExceeded) as refused:
        await writeback.submit(command("demo-r4", key, resource))
    assert (refused.value.limit, refused.value.path) == ("max_command_bytes", "command")


async def test_a_command_within_the_limits_is_written(writeback: WritebackClient, key: str) -> None:
    resource = samples.heart_rate("hostile", 72)
    resource["note"] = [{"text": "x" * (MAX_STRING_CHARS - 1)}]
    submission = await writeback.submit(command("demo-r4", key, resource))
    typed = writeback.temporal.get_workflow_handle_for(ClinicalWrite.run, submission.workflow_id)
    assert (await result_of(typed)).state is WriteState.VERIFIED


# --- whatever reaches the worker ends rejected, never Running -----------------------------------


def forged_continuation() -> dict[str, Any]:
    """What continue-as-new hands over, written by hand: a write "already verified", with a
    plan to send whatever it likes, that never went through validation or authorization."""
    cmd = command("demo-r4", "forged", samples.heart_rate("hostile", 72))
    status = WriteStatus(
        workflow_id=cmd.workflow_id,
        tenant="demo-r4",
        state=WriteState.VERIFIED,
        reason=CANARY,
        transitions=[Transition(state=WriteState.VERIFIED, at=datetime.now(UTC))],
    )
    return ContinuedWrite(
        command=cmd,
        status=status,
        plan=None,
        receipt=None,
        ehr_state=None,
        differences=[],
        ehr_timeout_seconds=10,
        search_lag_seconds=0,
        reconcile_after_seconds=0,
        maybe_landed=False,
        rechecks=0,
    ).model_dump(mode="json")


def with_note(text: str) -> dict[str, Any]:
    return {**samples.heart_rate("hostile", 72), "note": [{"text": text}]}


@pytest.mark.parametrize(
    ("argument", "reason"),
    [
        pytest.param(
            hand_written(resource=deep_heart_rate(250)),
            f"{too_deep_path()}: max_depth exceeded",
            id="nesting-past-the-parser",
        ),
        pytest.param(
            hand_written(resource=deep_heart_rate(MAX_DEPTH + 4)),
            f"{too_deep_path()}: max_depth exceeded",
            id="nesting",
        ),
        pytest.param(
            hand_written(resource=with_note(CANARY * 60_000)),
            "command: max_command_bytes exceeded",
            id="megabyte-string",
        ),
        pytest.param(
            hand_written(resource=with_note(CANARY * (MAX_STRING_CHARS // len(CANARY) + 1))),
            "resource.note[0].text: max_string_chars exceeded",
            id="long-string",
        ),
        pytest.param(
            hand_written(resource=with_note("x" * (MAX_COMMAND_BYTES - 2))),
            "resource.note[0].text: max_string_chars exceeded",
            id="long-string-and-too-large",
        ),
        pytest.param(
            hand_written(resource={**with_note(CANARY), "id": ["a" * 1000] * 300}),
            "command: max_command_bytes exceeded",
            id="too-large",
        ),
        pytest.param(
            hand_written(resource={**samples.heart_rate("h", 72), "é" * 70: CANARY}),
            "resource.?: max_name_chars exceeded",
            id="long-element-name",
        ),
        pytest.param(
            hand_written(tenant=5, resource=CANARY),
            "tenant: string_type; resource: dict_type",
            id="wrong-types",
        ),
        pytest.param(hand_written(resource={}), "resource: resource_empty", id="empty-resource"),
        pytest.param(
            hand_written(interaction="update"), "command: update_needs_target", id="update"
        ),
        pytest.param({"note": CANARY}, "tenant: missing", id="not-a-command"),
        pytest.param([CANARY, 1], "command: model_type", id="a-list"),
        pytest.param(CANARY, "command: model_type", id="a-string"),
        pytest.param(None, "command: not_json", id="null"),
        pytest.param(
            raw_json('{"tenant": "' + CANARY + '", '), "command: json_invalid", id="invalid-json"
        ),
        pytest.param(
            raw_json("[" * 100_000), f"command{'[0]' * MAX_DEPTH}: max_depth", id="brackets"
        ),
        pytest.param(
            RawValue(Payload(metadata={"encoding": b"binary/plain"}, data=CANARY.encode())),
            "command: not_json",
            id="not-json",
        ),
        pytest.param(
            forged_continuation(),
            "tenant: missing",
            id="a-continued-write-on-a-first-run",
        ),
    ],
)
async def test_a_start_bypassing_the_client_ends_rejected_not_running(
    writeback: WritebackClient,
    key: str,
    argument: Any,
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if isinstance(argument, dict) and "idempotency_key" in argument:
        argument["idempotency_key"] = key
    with caplog.at_level(logging.DEBUG):
        status = await start_by_hand(writeback, key, argument)
    assert_refused(status)
    assert status.reason and status.reason.startswith(reason), status.reason
    assert CANARY not in caplog.text and "Jane" not in caplog.text


async def test_a_start_without_an_argument_ends_rejected(
    writeback: WritebackClient, key: str
) -> None:
    assert_refused(await start_by_hand(writeback, key))


async def test_a_refused_start_names_paths_and_codes(writeback: WritebackClient, key: str) -> None:
    status = await start_by_hand(writeback, key, hand_written(tenant=5, idempotency_key=key))
    assert status.reason == "tenant: string_type"
    status = await start_by_hand(
        writeback, f"{key}-2", hand_written(idempotency_key=key, resource=deep_heart_rate(250))
    )
    assert status.reason == f"{too_deep_path()}: max_depth exceeded (limit {MAX_DEPTH})"


async def test_a_hand_written_valid_command_is_written(
    writeback: WritebackClient, key: str
) -> None:
    status = await start_by_hand(writeback, key, hand_written(idempotency_key=key))
    assert status.state is WriteState.VERIFIED


async def test_details_of_a_refused_start_have_no_command(
    writeback: WritebackClient, key: str
) -> None:
    await start_by_hand(writeback, key, hand_written(resource=CANARY, idempotency_key=key))
    details = await writeback.details(workflow_id_for("demo-r4", key))
    assert details.status.state is WriteState.REJECTED
    assert getattr(details, "command", "absent") is None


async def test_a_refused_start_reaches_the_audit_ledger(
    writeback: WritebackClient, key: str
) -> None:
    await start_by_hand(writeback, key, hand_written(tenant=f"{CANARY} x", idempotency_key=key))
    workflow_id = workflow_id_for("demo-r4", key)
    ledger = shared_ledger(ledger_location())
    mine = [
        AuditEvent.model_validate_json(record.body)
        for record in ledger.records("demo-r4")
        if record.entry_key.startswith(f"{workflow_id}/")
    ]
    assert [(e.state, e.error_class, e.requested_by) for e in mine] == [
        ("requested", None, "unknown"),
        ("rejected", "validation", "unknown"),
    ]
    assert not any(CANARY in record.body for record in ledger.records("demo-r4"))


@workflow.defn(name="ClinicalWrite", sandboxed=False)
class ReleasedClinicalWrite:
    """The entry of the release before this fix: Temporal decoded the argument as a command."""

    @workflow.run
    async def run(self, start: WriteCommand) -> WriteStatus:
        raise AssertionError("never reached with an argument it cannot decode")


async def test_a_write_stuck_on_its_first_task_is_rejected_once_the_fix_is_deployed(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry, key: str
) -> None:
    """The issue's 58 writes: Running, their first workflow task failing for ever. A worker with
    the fix opens their argument on the next attempt and ends them `rejected`."""
    task_queue = f"stuck-{uuid.uuid4().hex[:8]}"
    client = time_skipping.client
    workflow_id = workflow_id_for("demo-r4", key)
    argument = hand_written(idempotency_key=key, resource=deep_heart_rate(250))
    async with Worker(client, task_queue=task_queue, workflows=[ReleasedClinicalWrite]):
        handle = await client.start_workflow(
            "ClinicalWrite", argument, id=workflow_id, task_queue=task_queue
        )
        for _ in range(100):
            history = await handle.fetch_history()
            if any(
                e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events
            ):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the released entry did not fail its workflow task")
    async with ehr_http_client() as http, running_workers(client, tenants, http, task_queue):
        typed = client.get_workflow_handle_for(ClinicalWrite.run, workflow_id)
        status = await asyncio.wait_for(result_of(typed), timeout=60)
    assert_refused(status)
    assert status.reason == f"{too_deep_path()}: max_depth exceeded (limit {MAX_DEPTH})"
