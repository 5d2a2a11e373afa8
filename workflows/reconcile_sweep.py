"""ReconcileSweep: compare what the tenant's EHR holds with the durable record of our writes.

Run now (``writeback reconcile run``) or on a Temporal Schedule per tenant (``writeback reconcile
schedule``; ``writeback dev`` registers one for every tenant). A sweep examines every change since
the tenant's watermark (where the last complete sweep started, less an overlap), one page at a
time: a page's findings come back, never the page, so nothing grows with the window; after
``PAGES_PER_RUN`` pages it continues as new with its progress. A sweep that fails or is skipped
leaves the watermark where it was, so the next one examines what it missed, however long the gap.
Each finding goes to the review queue once per evidence (activities/sweep_judge.py).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from activities.command_steps import CommandSteps
from activities.models import SweepPageOrder, SweepSettings, SweepWindowOrder
from activities.sweep_reads import SweepReads
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
    LISTED_FINDINGS,
    Finding,
    SweepProgress,
    SweepReport,
    SweepRequest,
    finding_workflow_id,
)
from workflows.reconcile_finding import ReconcileFinding

#: Pages one run of the workflow examines before it continues as new: about 6 events and 1.6 KB
#: of history per page (bench/sweep_scale.py), so a run stays near 150 KB, 0.5 MB as JSON.
PAGES_PER_RUN = 100


@workflow.defn(name="ReconcileSweep")
class ReconcileSweep:
    def __init__(self) -> None:
        self._progress: SweepProgress | None = None

    @workflow.query
    def progress(self) -> SweepProgress | None:
        return self._progress

    @workflow.run
    async def run(self, request: SweepRequest) -> SweepReport:
        tenant = request.tenant
        settings: SweepSettings = await workflow.execute_local_activity_method(
            CommandSteps.sweep_settings,
            tenant,
            start_to_close_timeout=PURE_STEP_TIMEOUT,
            retry_policy=ONE_ATTEMPT,
        )
        progress = request.progress or await self._begin(request, settings)
        self._progress = progress
        sweep_id = request_id("sweep", progress.started.isoformat(timespec="seconds"))
        for _ in range(PAGES_PER_RUN):
            if progress.cursor.phase == "done":
                break
            page = await ehr_step(
                SweepReads.page,
                SweepPageOrder(
                    tenant=tenant,
                    request_id=sweep_id,
                    since=progress.since,
                    started=progress.started,
                    cursor=progress.cursor,
                ),
                tenant,
                SWEEP_TIMEOUT,
                SWEEP_RETRY,
                heartbeat=SWEEP_HEARTBEAT,
            )
            progress.pages += 1
            progress.cursor = page.cursor
            progress.resources_scanned += page.resources_scanned
            progress.writes_checked += page.writes_checked
            for finding in page.findings:
                progress.count(finding)
                await self._raise(progress, finding, settings)
        else:
            if progress.cursor.phase != "done":
                workflow.continue_as_new(SweepRequest(tenant=tenant, progress=progress))
        return SweepReport(
            tenant=tenant,
            since=progress.since,
            until=progress.started,
            from_watermark=progress.from_watermark,
            pages=progress.pages,
            resources_scanned=progress.resources_scanned,
            writes_checked=progress.writes_checked,
            findings_by_kind=progress.findings_by_kind,
            findings=progress.findings,
            raised_count=progress.raised_count,
            raised=progress.raised,
            notes=progress.notes,
        )

    async def _begin(self, request: SweepRequest, settings: SweepSettings) -> SweepProgress:
        started = workflow.now()
        window = await ehr_step(
            SweepReads.window,
            SweepWindowOrder(
                tenant=request.tenant,
                since=request.since,
                now=started,
                lookback_hours=settings.lookback_hours,
            ),
            request.tenant,
            SWEEP_TIMEOUT,
            SWEEP_RETRY,
        )
        return SweepProgress(
            since=window.since,
            started=started,
            from_watermark=window.from_watermark,
            notes=window.notes,
        )

    async def _raise(
        self, progress: SweepProgress, finding: Finding, settings: SweepSettings
    ) -> None:
        """Into the review queue, once per evidence: a finding already raised (open, or settled
        by a person) is not raised again for the same evidence."""
        finding = finding.model_copy(update={"auto_remediate": settings.auto_remediate_duplicates})
        try:
            await workflow.start_child_workflow(
                ReconcileFinding.run,
                finding,
                id=finding_workflow_id(finding),
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
        except WorkflowAlreadyStartedError:
            return
        progress.raised_count += 1
        if len(progress.raised) < LISTED_FINDINGS:
            progress.raised.append(finding_workflow_id(finding))
