"""ReconcileSweep: compare what the tenant's EHR holds with what our writes say happened.

Run now (``writeback reconcile run``) or on a Temporal Schedule per tenant (``writeback reconcile
schedule``; ``writeback dev`` registers one for every tenant). Each run is a short workflow of
its own, so the schedule never grows a history. Every finding becomes a ReconcileFinding waiting
in the review queue, started once per finding however many sweeps see it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from workflows.kernel import (
    ONE_ATTEMPT,
    PURE_STEP_TIMEOUT,
    SWEEP_HEARTBEAT,
    SWEEP_RETRY,
    SWEEP_TIMEOUT,
    ehr_step,
    request_id,
)
from workflows.reconcile_contract import (
    SweepReport,
    SweepRequest,
    finding_workflow_id,
    legacy_finding_workflow_id,
)
from workflows.reconcile_finding import ReconcileFinding

with workflow.unsafe.imports_passed_through():
    from activities.command_steps import CommandSteps
    from activities.models import ExamineOrder, ScanOrder, SweepSettings
    from activities.reconciliation import CompareOrder, Reconciler
    from activities.sweep_reads import SweepReads


@workflow.defn(name="ReconcileSweep")
class ReconcileSweep:
    @workflow.run
    async def run(self, request: SweepRequest) -> SweepReport:
        tenant = request.tenant
        settings: SweepSettings = await workflow.execute_local_activity_method(
            CommandSteps.sweep_settings,
            tenant,
            start_to_close_timeout=PURE_STEP_TIMEOUT,
            retry_policy=ONE_ATTEMPT,
        )
        until = workflow.now()
        since = request.since or until - timedelta(hours=settings.lookback_hours)
        sweep_id = request_id("sweep")
        scan = await ehr_step(
            SweepReads.scan,
            ScanOrder(tenant=tenant, request_id=sweep_id, since=since),
            tenant,
            SWEEP_TIMEOUT,
            SWEEP_RETRY,
            heartbeat=SWEEP_HEARTBEAT,
        )
        comparison = await workflow.execute_activity_method(
            Reconciler.compare,
            CompareOrder(tenant=tenant, since=since, scanned=scan.resources),
            start_to_close_timeout=SWEEP_TIMEOUT,
            heartbeat_timeout=SWEEP_HEARTBEAT,
            retry_policy=SWEEP_RETRY,
        )
        findings = list(comparison.findings)
        if comparison.candidates:
            findings += await ehr_step(
                SweepReads.examine,
                ExamineOrder(tenant=tenant, request_id=sweep_id, candidates=comparison.candidates),
                tenant,
                SWEEP_TIMEOUT,
                SWEEP_RETRY,
                heartbeat=SWEEP_HEARTBEAT,
            )
        report = SweepReport(
            tenant=tenant,
            since=since,
            until=until,
            resources_scanned=len(scan.resources),
            writes_checked=comparison.writes_checked,
            findings=findings,
        )
        if not scan.searchable:
            report.notes.append(
                "the tenant drops our identifiers: duplicates and orphans cannot be searched for; "
                "only verified writes were re-read (missing, drift)"
            )
        # a finding's id shows a digest of its command, not the command (issue 17, finding 6)
        finding_id = (
            finding_workflow_id
            if not findings or workflow.patched("finding-id-digest")
            else legacy_finding_workflow_id
        )
        for finding in findings:
            finding = finding.model_copy(
                update={"auto_remediate": settings.auto_remediate_duplicates}
            )
            try:
                await workflow.start_child_workflow(
                    ReconcileFinding.run,
                    finding,
                    id=finding_id(finding),
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
            except WorkflowAlreadyStartedError:
                continue  # an earlier sweep already raised it
            report.raised.append(finding_id(finding))
        return report
