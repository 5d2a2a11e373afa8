"""Issue #17, finding 9: everything that changes a chart or a write's fate is in the audit ledger.
Each test does one such thing through the real worker (time-skipping server, sandbox EHR) and
then reads the ledger the worker wrote to: who, what, when, with codes and references only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from support.sandbox_process import SandboxProcess
from support.sandbox_seed import planted_copy
from support.workers import running_worker
from support.workflow_runs import command, result_of, run_to_end, wait_until_settled
from temporalio.testing import WorkflowEnvironment

from activities.audit_ledger import AuditEvent
from adapters.ids import command_identifier
from adapters.tenants import TenantRegistry
from workers import samples
from workers.audit_cli import ledger_location, shared_ledger
from workers.client import WritebackClient
from workflows.clinical_saga import ClinicalSaga
from workflows.contract import Resolution, ResolutionAction, Urgency, WriteState
from workflows.reconcile_contract import Finding, FindingKind, finding_workflow_id
from workflows.reconcile_finding import ReconcileFinding
from workflows.saga_contract import SagaCommand

REFUSE_COMMUNICATION = {"kind": "status", "status": 422, "method": "POST", "type": "Communication"}


@pytest.fixture
async def writeback(
    time_skipping: WorkflowEnvironment, tenants: TenantRegistry
) -> AsyncIterator[WritebackClient]:
    async with running_worker(time_skipping.client, tenants) as client:
        yield client


def ledger_lines(tenant: str, workflow_id: str, kind: str) -> list[AuditEvent]:
    """What the ledger holds for one workflow, of one kind (and the chain still verifies)."""
    ledger = shared_ledger(ledger_location())
    assert ledger.verify(tenant).ok
    events = [AuditEvent.model_validate_json(r.body) for r in ledger.records(tenant)]
    return [e for e in events if e.correlation_id == workflow_id and e.kind == kind]


async def test_a_saga_compensation_leaves_a_withdrawal_per_step(
    writeback: WritebackClient, faults: httpx.AsyncClient, key: str
) -> None:
    await faults.post("/_admin/faults/demo-r4", json={"queue": [REFUSE_COMMUNICATION]})
    saga = SagaCommand(
        tenant="demo-r4",
        idempotency_key=key,
        kind="referral",
        steps=samples.referral("ledger-pt-1"),
        requested_by="referrals-svc",
    )
    submission = await writeback.submit_saga(saga)
    handle = writeback.temporal.get_workflow_handle_for(ClinicalSaga.run, submission.workflow_id)
    status = await result_of(handle)
    assert status.state is WriteState.COMPENSATED, status.reason

    lines = ledger_lines("demo-r4", submission.workflow_id, "withdrawal")
    withdrawn = {step.resource for step in status.steps if step.compensation == "withdrawn"}
    assert len(withdrawn) == 2
    assert {line.resource for line in lines} == withdrawn  # what
    assert all(line.outcome == "withdrawn" for line in lines)
    assert all(line.requested_by == "referrals-svc" for line in lines)  # on whose behalf
    assert all(line.at is not None for line in lines)  # when


async def test_a_finding_s_withdrawal_and_who_asked_for_it_are_in_the_ledger(
    time_skipping: WorkflowEnvironment, writeback: WritebackClient, ehr: SandboxProcess, key: str
) -> None:
    """A duplicate finding; a person decides ``retry``: the extra copy is withdrawn."""
    first = await run_to_end(writeback, command("demo-r4", key))
    assert first.resource
    copy = await planted_copy(ehr, "demo-r4", first.resource)
    finding = Finding(
        kind=FindingKind.DUPLICATE,
        tenant="demo-r4",
        command=command_identifier("demo-r4", key),
        write_id=first.workflow_id,
        resources=[first.resource, copy],
        keep=first.resource,
        detail="two copies of one command (planted)",
    )
    finding_id = finding_workflow_id(finding)
    await writeback.temporal.start_workflow(
        ReconcileFinding.run, finding, id=finding_id, task_queue=writeback.task_queue
    )
    await wait_until_settled(time_skipping, writeback, finding_id)
    retry = Resolution(action=ResolutionAction.RETRY, by="op-9", reason="withdraw the copy")
    final = await writeback.resolve(finding_id, retry, decision_id=f"{key}-d1")
    assert final.state is WriteState.COMPENSATED

    (withdrawal,) = ledger_lines("demo-r4", finding_id, "withdrawal")
    assert (withdrawal.resource, withdrawal.outcome) == (copy, "withdrawn")
    assert withdrawal.requested_by == "op-9"
    (decision,) = ledger_lines("demo-r4", finding_id, "decision")
    assert decision.requested_by == "op-9"
    assert (decision.outcome, decision.state) == ("retry", "mismatch")


async def test_an_operator_decision_on_a_write_says_who_decided_what_and_when(
    time_skipping: WorkflowEnvironment,
    writeback: WritebackClient,
    faults: httpx.AsyncClient,
    key: str,
) -> None:
    await faults.post(
        "/_admin/faults/demo-r4",
        json={"queue": [{"kind": "status", "status": 503, "method": "POST"}] * 10},
    )
    cmd = command("demo-r4", key, urgency=Urgency.STAT)
    await writeback.submit(cmd)
    status = await wait_until_settled(time_skipping, writeback, cmd.workflow_id)
    assert status.state is WriteState.PENDING_CONFIRMATION
    await faults.delete("/_admin/faults/demo-r4")

    abandon = Resolution(action=ResolutionAction.ABANDON, by="op-1", reason="Jane Doe re-enters")
    final = await writeback.resolve(cmd.workflow_id, abandon, decision_id=f"{key}-d1")
    assert final.state is WriteState.ABANDONED

    (decision,) = ledger_lines("demo-r4", cmd.workflow_id, "decision")
    assert decision.requested_by == "op-1"  # who
    assert (decision.outcome, decision.state) == ("abandon", "pending_confirmation")  # what
    assert decision.at >= status.transitions[-1].at  # when
    assert "Jane" not in decision.model_dump_json()  # the free-text reason stays out
