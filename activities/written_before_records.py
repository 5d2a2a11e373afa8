"""Writes from before the durable record was kept (activities/write_records.py): while Temporal
still holds them, a sweep asks it what became of a command it finds no record of, so an upgrade
does not turn every earlier write into an orphan. Past Temporal's retention such a write is gone
from both, and its copies are reported as orphans (README: Reconciliation)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.write_records import WriteRecord
from adapters.ids import write_id_of


async def records_from_temporal(client: Client, commands: set[str]) -> dict[str, WriteRecord]:
    """What Temporal says of these commands' writes (those it knows), as records. Workflow ids
    only, never a visibility query: a command read from the EHR goes into no query language."""
    found = {}
    for command in sorted(commands):
        status = await _status(client, write_id_of(command))
        if status is None:
            continue
        found[command] = WriteRecord(
            command=command,
            state=str(status.get("state")),
            resource=status.get("resource"),
            version=status.get("version"),
            at=datetime.now(UTC),
        )
    return found


async def _status(client: Client, workflow_id: str) -> dict[str, Any] | None:
    handle = client.get_workflow_handle(workflow_id)
    try:
        description = await handle.describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise
    if description.status == WorkflowExecutionStatus.COMPLETED:
        result: dict[str, Any] = await handle.result()
        return result
    if description.status == WorkflowExecutionStatus.RUNNING:
        answer: dict[str, Any] = await handle.query("status")
        return answer
    return {"state": "ended_abnormally"}
