"""ReconcileSweep: compare what the tenant's EHR holds with what our writes say happened.

Run now (``writeback reconcile run``) or on a Temporal Schedule per tenant (``writeback reconcile
schedule``; ``writeback dev`` registers one for every tenant). Each run is a short workflow of
its own, so the schedule never grows a history. Every finding becomes a ReconcileFinding waiting
in the review queue, started once per finding however many sweeps see it.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from workflows.reconcile_contract import SweepReport, SweepRequest, finding_workflow_id
from workflows.reconcile_finding import ReconcileFinding
from workflows.task_queues import ehr_task_queue

with workflow.unsafe.imports_passed_through():
    from activities.command_steps import CommandSteps
    from activities.models import ExamineOrder, ScanOrder, SweepSettings
    from activities.reconciliation import CompareOrder, Reconciler
    from activities.sweep_reads import SweepReads

_RETRY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30))


@workflow.defn(name="ReconcileSweep")
class ReconcileSweep:
    @workflow.run
    async def run(self, request: SweepRequest) -> SweepReport:
        tenant = request.tenant
        settings: SweepSettings = await workflow.execute_local_activity_method(
            CommandSteps.sweep_settings,
            tenant,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=1),
        )
        until = workflow.now()
        since = request.since or until - timedelta(hours=settings.lookback_hours)
        request_id = f"{workflow.info().workflow_id}/sweep"
        ehr_queue = ehr_task_queue(workflow.info().task_queue, tenant)
        scan = await workflow.execute_activity_method(
            SweepReads.scan,
            ScanOrder(tenant=tenant, request_id=request_id, since=since),
            task_queue=ehr_queue,
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=_RETRY,
        )
        comparison = await workflow.execute_activity_method(
            Reconciler.compare,
            CompareOrder(tenant=tenant, since=since, scanned=scan.resources),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=_RETRY,
        )
        findings = list(comparison.findings)
        if comparison.candidates:
            findings += await workflow.execute_activity_method(
                SweepReads.examine,
                ExamineOrder(
                    tenant=tenant, request_id=request_id, candidates=comparison.candidates
                ),
                task_queue=ehr_queue,
                start_to_close_timeout=timedelta(minutes=30),
                heartbeat_timeout=timedelta(minutes=2),
                retry_policy=_RETRY,
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
        for finding in findings:
            finding = finding.model_copy(
                update={"auto_remediate": settings.auto_remediate_duplicates}
            )
            try:
                await workflow.start_child_workflow(
                    ReconcileFinding.run,
                    finding,
                    id=finding_workflow_id(finding),
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
            except WorkflowAlreadyStartedError:
                continue  # an earlier sweep already raised it
            report.raised.append(finding_workflow_id(finding))
        return report
