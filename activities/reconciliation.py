"""The reconciliation sweep's bookkeeping side: compare what the EHR holds (a scan of resources
carrying our command identifiers) with what the writes say happened, and name each difference.

It reads Temporal (the writes' outcomes and the visibility store), never the EHR; the EHR side is
``EhrSteps.scan`` and ``EhrSteps.examine``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from activities.models import Candidate, Finding, FindingKind, ScannedResource

#: Write states (workflows/contract.py) meaning "in the chart", and "nothing decided yet".
_IN_CHART = frozenset({"verified", "reconciled"})
_UNDECIDED = frozenset(
    {"requested", "validated", "authorized", "in_flight", "acknowledged", "pending_confirmation"}
)


class CompareOrder(BaseModel):
    tenant: str
    since: datetime
    scanned: list[ScannedResource]


class Comparison(BaseModel):
    findings: list[Finding]
    candidates: list[Candidate]  # for EhrSteps.examine: drift and missing need a direct read
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
        """Saga steps' keys are ``saga.{saga key}.{step}`` (workflows/saga_contract.py)."""
        tenant, key = command.split(":", 1)
        if not key.startswith("saga."):
            return False
        saga_key, step = key.removeprefix("saga.").rsplit(".", 1)
        saga = await self._outcome(f"wb-saga:{tenant}:{saga_key}")
        steps = (saga or {}).get("steps") or []
        compensation = next((s.get("compensation") for s in steps if s.get("name") == step), None)
        return compensation in ("withdrawn", "withdrawn_by_hand")

    async def _verified_since(self, tenant: str, since: datetime) -> list[str]:
        query = (
            f"WritebackTenant = '{tenant}' AND WritebackState IN ('verified', 'reconciled') "
            f"AND WorkflowType = 'ClinicalWrite' AND StartTime >= '{since.isoformat()}'"
        )
        return [execution.id async for execution in self._client.list_workflows(query)]

    @activity.defn(name="compare")
    async def compare(self, order: CompareOrder) -> Comparison:
        by_command: dict[str, list[ScannedResource]] = defaultdict(list)
        for resource in order.scanned:
            by_command[resource.command].append(resource)
        write_ids = {f"wb:{command}" for command in by_command}
        write_ids |= set(await self._verified_since(order.tenant, order.since))
        findings: list[Finding] = []
        candidates: list[Candidate] = []
        for write_id in sorted(write_ids):
            activity.heartbeat(write_id)
            command = write_id.removeprefix("wb:")
            outcome = await self._outcome(write_id)
            found = by_command.get(command, [])
            live = [r.reference for r in found if not r.withdrawn]
            state = outcome.get("state") if outcome else None
            ours = outcome.get("resource") if outcome else None
            if state in _UNDECIDED:
                continue  # the write itself will still decide (and re-check by itself)
            if state in _IN_CHART and await self._withdrawn_by_its_saga(command):
                continue  # compensated on purpose: out of the chart is what we believe
            if state not in _IN_CHART:
                if live:
                    why = "no write exists" if outcome is None else f"its write ended {state}"
                    findings.append(
                        Finding(
                            kind=FindingKind.ORPHAN,
                            tenant=order.tenant,
                            command=command,
                            write_id=write_id,
                            resources=live,
                            detail=f"{', '.join(live)} carries our identifier but {why}",
                        )
                    )
                continue
            assert outcome is not None  # in the chart
            if len(live) > 1:
                findings.append(
                    Finding(
                        kind=FindingKind.DUPLICATE,
                        tenant=order.tenant,
                        command=command,
                        write_id=write_id,
                        resources=live,
                        keep=ours if ours in live else None,
                        detail=f"{len(live)} resources in the chart for one write: "
                        + ", ".join(live),
                    )
                )
            seen = next((r for r in found if r.reference == ours), None)
            unchanged = seen and not seen.withdrawn and seen.version == outcome.get("version")
            if ours and not unchanged:
                candidates.append(
                    Candidate(command=command, reference=ours, version=outcome.get("version"))
                )
        return Comparison(findings=findings, candidates=candidates, writes_checked=len(write_ids))
