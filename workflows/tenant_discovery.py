"""TenantDiscovery: one capability-discovery run for a tenant, started by its Temporal Schedule
(``writeback tenants schedule T``). The result (changes since the last run, mismatches with the
configuration) shows in the Schedule's recent runs; a run with a mismatch fails with type
``capability_mismatch`` so that it stands out in the Web UI and in failure metrics."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from activities.capability_discovery import CapabilityDiscovery, DiscoveryReport
from workflows.task_queues import ehr_task_queue

MISMATCH_ERROR_TYPE = "capability_mismatch"


@workflow.defn(name="TenantDiscovery")
class TenantDiscovery:
    @workflow.run
    async def run(self, tenant: str) -> DiscoveryReport:
        report = await workflow.execute_activity_method(
            CapabilityDiscovery.run,
            tenant,
            task_queue=ehr_task_queue(workflow.info().task_queue, tenant),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_attempts=3),
        )
        if report.mismatches:
            raise ApplicationError(
                f"{len(report.mismatches)} mismatch(es) with the tenant's configuration: "
                + "; ".join(report.mismatches),
                report,
                type=MISMATCH_ERROR_TYPE,
                non_retryable=True,
            )
        return report
