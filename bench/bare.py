"""The Temporal baselines: workflows whose steps do nothing, run by bench/bare_worker.py.

- ``MinimalWrite`` (the minimal durable workflow): a start and ONE no-op activity on a queue of
  its own. This is the least a durable write through Temporal can cost (a workflow task, an
  activity task, a workflow task to complete), and what the targets of issue #21 are set against.
- ``BareWrite`` (the floor of ClinicalWrite's shape): three local activities (validate, map,
  authorize) and then three activities (write, verify, and the one-copy check's search) on that
  queue, as ClinicalWrite runs them, with no-op steps. Its difference from ``MinimalWrite`` is
  what the shape costs; the difference between writeback and it is what writeback itself costs on
  top of Temporal (payload conversion, search attribute upserts, the workflow sandbox, HTTP to
  the EHR).

This module is imported inside the workflow sandbox: keep it free of side effects at import.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

WORKFLOW_NAME = "BenchBareWrite"
MINIMAL_WORKFLOW_NAME = "BenchMinimalWrite"
_TIMEOUT = timedelta(seconds=30)


def activity_queue(workflow_queue: str) -> str:
    """The no-op "EHR" steps run on a queue of their own, like ClinicalWrite's tenant queues."""
    return f"{workflow_queue}-act"


@activity.defn(name="bench_noop")
async def noop(key: str) -> str:
    return key


@workflow.defn(name=MINIMAL_WORKFLOW_NAME)
class MinimalWrite:
    @workflow.run
    async def run(self, key: str) -> str:
        queue = activity_queue(workflow.info().task_queue)
        return await workflow.execute_activity(
            noop, key, task_queue=queue, start_to_close_timeout=_TIMEOUT
        )


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
