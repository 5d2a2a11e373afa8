"""ReconcileFinding: one difference a sweep found between the EHR and our writes, waiting in the
review queue (state ``mismatch``) with its context until a person decides, or remediated at
once where the tenant's policy allows it (duplicates only).

Decisions: ``confirm`` (acknowledged: the chart is right as it is), ``retry`` on a duplicate
(withdraw the extra copies, keeping the one the write verified), ``abandon`` (dismissed).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

from activities.ehr_writes import EhrWrites
from activities.models import EhrWithdraw
from adapters.compensation import withdrawal
from workflows import search_attributes as sa
from workflows import write_metrics
from workflows.audit_trail import SettledMoves, hand_over, withdrawal_event
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
from workflows.kernel import SAGA_WITHDRAW_TIMEOUT, ehr_step, reason_of, request_id
from workflows.person_waits import PersonWaits
from workflows.reconcile_contract import Finding, FindingKind

#: who asks for an automatic remediation (in the ledger, and checked against the tenant's settings)
TENANT_POLICY = "tenant-policy"
#: who raised a finding, as its ledger lines say
FOUND_BY = "reconcile-sweep"


@workflow.defn(name="ReconcileFinding")
class ReconcileFinding(PersonWaits[WriteStatus]):
    _noun = "finding"

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
            reason=finding.reason,
            waiting_since=workflow.now(),
            transitions=[Transition(state=WriteState.MISMATCH, at=workflow.now())],
        )
        self._decisions = DecisionInbox(check=self._prove_decision)
        self._settled = SettledMoves(requested_by=FOUND_BY)
        self._settled.moved(self._status)  # raised in mismatch

    @workflow.query
    def finding(self) -> Finding:
        return self._finding

    def _awaits_decision(self, state: WriteState) -> bool:
        return state is WriteState.MISMATCH

    def _refusal(self, resolution: Resolution) -> str | None:
        allowed = {ResolutionAction.CONFIRM, ResolutionAction.ABANDON}
        if self._finding.kind is FindingKind.DUPLICATE:
            allowed.add(ResolutionAction.RETRY)
        if resolution.action not in allowed:
            names = ", ".join(sorted(action.value for action in allowed))
            return f"a {self._finding.kind.value} finding takes one of: {names}"
        return None

    def _publish(self, state: WriteState, began_waiting: bool) -> None:
        workflow.upsert_search_attributes([sa.STATE.value_set(state.value)])
        self._settled.moved(self._status)

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
            await self._remediate("tenant policy: auto-remediate duplicates", TENANT_POLICY)
        await self._settled.hand_over()
        while self._status.state is WriteState.MISMATCH:
            async with self._decisions.next() as resolution:
                await self._audit_decision(resolution)
                note = f"{resolution.action.value} by {resolution.by}: {resolution.reason}"
                if resolution.action is ResolutionAction.CONFIRM:
                    self._move(WriteState.RECONCILED, f"acknowledged: {note}")
                elif resolution.action is ResolutionAction.ABANDON:
                    self._move(WriteState.ABANDONED, f"dismissed: {note}")
                else:
                    await self._remediate(note, resolution.by)
            await self._settled.hand_over()
        return self._status

    async def _remediate(self, why: str, by: str) -> None:
        """Withdraw every copy but the one the write verified; ``by``: who asked (a person, or
        the tenant's policy), for the audit ledger. A finding that does not say which copy the
        write verified has nothing to keep by right: a person decides (and withdraws by hand)."""
        finding = self._finding
        if finding.keep is None or finding.keep not in finding.resources:
            self._status.reason = (
                "remediation refused: the finding does not name the copy the write verified"
            )
            self._note(self._status.reason)
            return
        keep = finding.keep
        extra = [reference for reference in finding.resources if reference != keep]
        failures = []
        audited = []
        for index, reference in enumerate(extra):
            key = f"{index}.{len(self._status.transitions)}"  # a new round adds a transition
            elements = withdrawal(reference.split("/")[0])
            if elements is None:
                failures.append(f"{reference}: its type cannot be withdrawn")
                continue
            try:
                await ehr_step(
                    EhrWrites.withdraw,
                    EhrWithdraw(
                        tenant=finding.tenant,
                        request_id=request_id(reference),
                        target=reference,
                        withdrawal=elements,
                        written={},
                        extra_copy_of=finding.command,
                        keep=keep,
                        by_tenant_policy=by == TENANT_POLICY,
                    ),
                    finding.tenant,
                    SAGA_WITHDRAW_TIMEOUT,
                    BUDGETS[Urgency.URGENT].policy(),
                )
            except ActivityError as err:
                failures.append(f"{reference}: {err.cause or err}")
                failed = withdrawal_event(
                    self._status, key, by, reference, "failed", reason_of(err)[0]
                )
                audited.append(failed)
            else:
                audited.append(withdrawal_event(self._status, key, by, reference, "withdrawn"))
        await hand_over(audited)
        if failures:
            self._status.reason = "remediation failed: " + "; ".join(failures)
            self._note(self._status.reason)
            return
        self._move(
            WriteState.COMPENSATED,
            f"extra copies withdrawn ({', '.join(extra)}), kept {keep}: {why}",
        )
