"""The reconciliation sweep's bookkeeping side: compare what the EHR holds (a scan of resources
carrying our command identifiers) with what the writes say happened, and name each difference.

It reads Temporal (the writes' outcomes and the visibility store), never the EHR; the EHR side is
``SweepReads.scan`` and ``SweepReads.examine`` (activities/sweep_reads.py).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

from activities.models import Candidate, ScannedResource
from adapters.findings import Finding, FindingKind
from adapters.ids import (
    command_of,
    is_command_of,
    saga_step_of,
    saga_workflow_id,
    split_command,
    write_id_of,
)

#: Write states (workflows/contract.py) meaning "in the chart", and "nothing decided yet".
_IN_CHART = frozenset({"verified", "reconciled"})
_UNDECIDED = frozenset(
    {"requested", "validated", "authorized", "in_flight", "acknowledged", "pending_confirmation"}
)


#: The write's state search attribute (workflows/search_attributes.py; activities do not import
#: workflows).
_STATE = SearchAttributeKey.for_keyword("WritebackState")
#: Workflow ids per visibility query (``WorkflowId IN (...)``).
_IDS_PER_QUERY = 200
#: What a value in one of our visibility queries may hold: tenant ids, workflow ids, timestamps.
_LITERAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,255}")


def literal(value: str) -> str:
    """``value`` as a string literal of a visibility query. Values come (indirectly) from the
    EHR, so a value that could be anything but a literal — a quote, a backslash, a space — is
    refused rather than escaped: the scan lets no such value through (issue 17, finding 6)."""
    if not _LITERAL.fullmatch(value):
        raise ValueError("not a value a visibility query may hold")
    return f"'{value}'"


@dataclass(frozen=True)
class WriteSummary:
    """What visibility says of a write, without asking the write itself."""

    state: str | None
    running: bool
    closed_at: datetime | None


class CompareOrder(BaseModel):
    tenant: str
    since: datetime
    scanned: list[ScannedResource]


class Comparison(BaseModel):
    findings: list[Finding]
    candidates: list[Candidate]  # for SweepReads.examine: drift and missing need a direct read
    writes_checked: int


class Reconciler:
    def __init__(self, client: Client) -> None:
        self._client = client

    async def _outcome(self, workflow_id: str) -> dict[str, Any] | None:
        """A write's status as plain JSON (its result, else its ``status`` query); None when no
        such write exists."""
        handle = self._client.get_workflow_handle(workflow_id)
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

    async def _withdrawn_by_its_saga(self, command: str) -> bool:
        """Saga steps' keys are ``saga.{saga key}.{step}`` (adapters/ids.py)."""
        tenant, key = split_command(command)
        if (saga_step := saga_step_of(key)) is None:
            return False
        saga_key, step = saga_step
        saga = await self._outcome(saga_workflow_id(tenant, saga_key))
        steps = (saga or {}).get("steps") or []
        compensation = next((s.get("compensation") for s in steps if s.get("name") == step), None)
        return compensation in ("withdrawn", "withdrawn_by_hand")

    async def _summaries(self, query: str) -> dict[str, WriteSummary]:
        found = {}
        async for execution in self._client.list_workflows(query):
            state = execution.typed_search_attributes.get(_STATE)
            if execution.status not in (
                WorkflowExecutionStatus.RUNNING,
                WorkflowExecutionStatus.COMPLETED,
            ):
                state = "ended_abnormally"
            found[execution.id] = WriteSummary(
                state=state,
                running=execution.status == WorkflowExecutionStatus.RUNNING,
                closed_at=execution.close_time,
            )
        return found

    async def _writes(
        self, tenant: str, since: datetime, commands: list[str]
    ) -> dict[str, WriteSummary]:
        """From visibility, a page per thousand writes: the writes verified in the window (for
        ``missing``), and those of the commands the scan found, whenever they started."""
        in_window = (
            f"WritebackTenant = {literal(tenant)} AND WritebackState IN ('verified', 'reconciled') "
            f"AND WorkflowType = 'ClinicalWrite' AND StartTime >= {literal(since.isoformat())}"
        )
        writes = await self._summaries(in_window)
        unknown = [write_id_of(c) for c in commands if write_id_of(c) not in writes]
        for start in range(0, len(unknown), _IDS_PER_QUERY):
            ids = ", ".join(literal(i) for i in unknown[start : start + _IDS_PER_QUERY])
            writes |= await self._summaries(f"WorkflowId IN ({ids})")
            activity.heartbeat(start)
        return writes

    @activity.defn(name="compare")
    async def compare(self, order: CompareOrder) -> Comparison:
        """Name what differs. The writes' states come from visibility; a write's own outcome
        (two RPCs) is fetched only where the scan shows something to look at: several copies,
        none, or a copy changed after the write closed."""
        by_command: dict[str, list[ScannedResource]] = defaultdict(list)
        for resource in order.scanned:
            if is_command_of(order.tenant, resource.command):  # the scan checked it too
                by_command[resource.command].append(resource)
        writes = await self._writes(order.tenant, order.since, sorted(by_command))
        commands = sorted(set(by_command) | {command_of(w) for w in writes})
        findings: list[Finding] = []
        candidates: list[Candidate] = []
        for command in commands:
            write_id = write_id_of(command)
            summary = writes.get(write_id)
            live = [r for r in by_command.get(command, []) if not r.withdrawn]
            refs = [r.reference for r in live]
            if summary and summary.state in _UNDECIDED:
                continue  # the write itself will still decide (and re-check by itself)
            if summary is None or summary.state not in _IN_CHART:
                if live:
                    why = (
                        "no write exists" if summary is None else f"its write ended {summary.state}"
                    )
                    findings.append(
                        Finding(
                            kind=FindingKind.ORPHAN,
                            tenant=order.tenant,
                            command=command,
                            write_id=write_id,
                            resources=refs,
                            detail=f"{', '.join(refs)} carries our identifier but {why}",
                            write_exists=summary is not None,
                        )
                    )
                continue
            # in the chart: a write still open re-checks by itself (per-write reconciliation)
            changed = summary.closed_at is not None and any(
                r.last_updated is None or r.last_updated > summary.closed_at for r in live
            )
            if len(live) == 1 and (summary.running or not changed):
                continue
            if not live and (summary.running or await self._withdrawn_by_its_saga(command)):
                continue  # compensated on purpose: out of the chart is what we believe
            activity.heartbeat(command)
            outcome = await self._outcome(write_id) or {}
            ours = outcome.get("resource")
            if len(live) > 1:
                findings.append(
                    Finding(
                        kind=FindingKind.DUPLICATE,
                        tenant=order.tenant,
                        command=command,
                        write_id=write_id,
                        resources=refs,
                        keep=ours if ours in refs else None,
                        detail=f"{len(live)} resources in the chart for one write: "
                        + ", ".join(refs),
                    )
                )
            if ours and not summary.running:
                candidates.append(
                    Candidate(command=command, reference=ours, version=outcome.get("version"))
                )
        return Comparison(findings=findings, candidates=candidates, writes_checked=len(commands))
