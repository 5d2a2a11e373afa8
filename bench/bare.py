"""The floor: a workflow of ClinicalWrite's shape whose steps do nothing.

ClinicalWrite runs three local activities (validate, map, authorize) and then three activities
(write, verify, and the one-copy check's search) on a per-tenant task queue. ``BareWrite`` does
the same with no-op steps, so the difference between the two is what writeback itself costs on
top of Temporal (payload conversion, search attribute upserts, the workflow sandbox, HTTP to the
EHR).

This module is imported inside the workflow sandbox: keep it free of side effects at import.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

WORKFLOW_NAME = "BenchBareWrite"
_TIMEOUT = timedelta(seconds=30)


def activity_queue(workflow_queue: str) -> str:
    """The no-op "EHR" steps run on a queue of their own, like ClinicalWrite's tenant queues."""
    return f"{workflow_queue}-act"


@activity.defn(name="bench_noop")
async def noop(key: str) -> str:
    return key


@workflow.defn(name=WORKFLOW_NAME)
class BareWrite:
    @workflow.run
    async def run(self, key: str) -> str:
        for _ in range(3):
            await workflow.execute_local_activity(noop, key, start_to_close_timeout=_TIMEOUT)
        queue = activity_queue(workflow.info().task_queue)
        for _ in range(3):
            await workflow.execute_activity(
                noop, key, task_queue=queue, start_to_close_timeout=_TIMEOUT
            )
        return key
