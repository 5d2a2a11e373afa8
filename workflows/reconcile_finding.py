"""ReconcileFinding: one difference a sweep found between the EHR and our writes, waiting in the
review queue (state ``mismatch``) with its context until a person decides, or remediated at
once where the tenant's policy allows it (duplicates only).

Decisions: ``confirm`` (acknowledged: the chart is right as it is), ``retry`` on a duplicate
(withdraw the extra copies, keeping the one the write verified), ``abandon`` (dismissed).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError

from workflows import search_attributes as sa
from workflows import write_metrics
from workflows.budgets import BUDGETS
from workflows.contract import (
    Resolution,
    ResolutionAction,
    Transition,
    Urgency,
    WriteState,
    WriteStatus,
)
from workflows.decisions import DecisionInbox
from workflows.reconcile_contract import Finding, FindingKind
from workflows.task_queues import ehr_task_queue

with workflow.unsafe.imports_passed_through():
    from activities.ehr_writes import EhrWrites
    from activities.models import EhrWithdraw
    from adapters.compensation import withdrawal


@workflow.defn(name="ReconcileFinding")
class ReconcileFinding:
    @workflow.init
    def __init__(self, finding: Finding) -> None:
        self._finding = finding
        self._status = WriteStatus(
            workflow_id=workflow.info().workflow_id,
            tenant=finding.tenant,
            state=WriteState.MISMATCH,
            resource_type=finding.resources[0].split("/")[0] if finding.resources else None,
            resource=finding.resources[0] if finding.resources else None,
            error_class=finding.kind.value,
            reason=f"{finding.kind.value}: {finding.detail} (write {finding.write_id})",
            waiting_since=workflow.now(),
            transitions=[Transition(state=WriteState.MISMATCH, at=workflow.now())],
        )
        self._decisions = DecisionInbox()

    @workflow.query
    def status(self) -> WriteStatus:
        return self._status

    @workflow.query
    def finding(self) -> Finding:
        return self._finding

    @workflow.update
    async def resolve(self, resolution: Resolution) -> WriteStatus:
        await self._decisions.deliver(resolution)
        return self._status

    @resolve.validator
    def _resolve_allowed(self, resolution: Resolution) -> None:
        if self._status.state is not WriteState.MISMATCH:
            raise ValueError(f"finding is '{self._status.state}', not waiting for a decision")
        if self._decisions.busy:
            raise ValueError("a decision is already being applied")
        allowed = {ResolutionAction.CONFIRM, ResolutionAction.ABANDON}
        if self._finding.kind is FindingKind.DUPLICATE:
            allowed.add(ResolutionAction.RETRY)
        if resolution.action not in allowed:
            names = ", ".join(sorted(action.value for action in allowed))
            raise ValueError(f"a {self._finding.kind.value} finding takes one of: {names}")

    def _move(self, state: WriteState, detail: str) -> None:
        self._status.state = state
        self._status.waiting_since = None if not state.is_waiting_for_human else workflow.now()
        self._status.transitions.append(Transition(state=state, at=workflow.now(), detail=detail))
        workflow.upsert_search_attributes([sa.STATE.value_set(state.value)])

    @workflow.run
    async def run(self, finding: Finding) -> WriteStatus:
        workflow.upsert_search_attributes(
            [
                sa.STATE.value_set(WriteState.MISMATCH.value),
                sa.TENANT.value_set(finding.tenant),
                sa.ERROR_CLASS.value_set(finding.kind.value),
                sa.WAITING_SINCE.value_set(workflow.now()),
                *(
                    [sa.RESOURCE_TYPE.value_set(self._status.resource_type)]
                    if self._status.resource_type
                    else []
                ),
            ]
        )
        write_metrics.settled(self._status)  # counted as a reconciliation mismatch, by kind
        if finding.kind is FindingKind.DUPLICATE and finding.auto_remediate:
            await self._remediate("tenant policy: auto-remediate duplicates")
        while self._status.state is WriteState.MISMATCH:
            async with self._decisions.next() as resolution:
                note = f"{resolution.action.value} by {resolution.by}: {resolution.reason}"
                if resolution.action is ResolutionAction.CONFIRM:
                    self._move(WriteState.RECONCILED, f"acknowledged: {note}")
                elif resolution.action is ResolutionAction.ABANDON:
                    self._move(WriteState.ABANDONED, f"dismissed: {note}")
                else:
                    await self._remediate(note)
        return self._status

    async def _remediate(self, why: str) -> None:
        """Withdraw every copy but the one the write verified (else the first by reference)."""
        finding = self._finding
        keep = finding.keep or sorted(finding.resources)[0]
        extra = [reference for reference in finding.resources if reference != keep]
        failures = []
        for reference in extra:
            elements = withdrawal(reference.split("/")[0])
            if elements is None:
                failures.append(f"{reference}: its type cannot be withdrawn")
                continue
            try:
                await workflow.execute_activity_method(
                    EhrWrites.withdraw,
                    EhrWithdraw(
                        tenant=finding.tenant,
                        request_id=f"{workflow.info().workflow_id}/{reference}",
                        target=reference,
                        withdrawal=elements,
                        written={},
                    ),
                    task_queue=ehr_task_queue(workflow.info().task_queue, finding.tenant),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=BUDGETS[Urgency.URGENT].policy(),
                )
            except ActivityError as err:
                failures.append(f"{reference}: {err.cause or err}")
        if failures:
            self._status.reason = "remediation failed: " + "; ".join(failures)
            self._status.transitions.append(
                Transition(state=WriteState.MISMATCH, at=workflow.now(), detail=self._status.reason)
            )
            return
        self._move(
            WriteState.COMPENSATED,
            f"extra copies withdrawn ({', '.join(extra)}), kept {keep}: {why}",
        )
