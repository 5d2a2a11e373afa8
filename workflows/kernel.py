"""The workflow kernel: what every workflow's steps share.

One home for the options activities run with (the task queue of a tenant's EHR calls, timeouts,
retry policies, PHI-free request ids) and for the translation of a failed step into the error
taxonomy (``StepFailed``, ``failure_of``, ``reason_of``). ClinicalWrite, ClinicalSaga (and its
compensation), ReconcileSweep and ReconcileFinding all take them from here; the workflows that
wait for a person share their handlers in workflows/person_waits.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from activities.errors import NON_RETRYABLE_TYPES, RETRYABLE, TAXONOMY, ErrorClass
from adapters.reasons import safe_reason
from workflows.task_queues import ehr_task_queue

#: The pure steps retry only on infrastructure hiccups, never on a decided failure.
PURE_STEP_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=NON_RETRYABLE_TYPES)
PURE_STEP_TIMEOUT = timedelta(seconds=10)
#: Reads (verify, locate) are safe to repeat: Temporal retries them, paced by the activity's jitter.
READ_RETRY = RetryPolicy(
    maximum_attempts=6,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)
#: Writes are attempted once per activity; the workflow decides about the next attempt.
ONE_ATTEMPT = RetryPolicy(maximum_attempts=1)
#: A sweep's scans and comparisons: long, heartbeating, repeatable.
SWEEP_RETRY = RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=30))
SWEEP_TIMEOUT = timedelta(minutes=30)
SWEEP_HEARTBEAT = timedelta(minutes=2)
#: A saga's reads and withdrawals run with fixed deadlines (its steps' tenants' timeouts vary).
SAGA_READ_TIMEOUT = timedelta(seconds=30)
SAGA_WITHDRAW_TIMEOUT = timedelta(seconds=60)

A = TypeVar("A")
R = TypeVar("R")


def ehr_queue(tenant: str) -> str:
    """EHR activities run on the tenant's own task queue, whose rate limit Temporal enforces
    across every worker (see workers/worker.py)."""
    return ehr_task_queue(workflow.info().task_queue, tenant)


def request_id(*parts: object) -> str:
    """PHI-free correlation id the EHR sees as X-Request-Id: the workflow id, then ``parts``."""
    return "/".join([workflow.info().workflow_id, *map(str, parts)])


async def ehr_step(
    step: Callable[[Any, A], Awaitable[R]],
    order: A,
    tenant: str,
    start_to_close: timedelta,
    retry: RetryPolicy,
    heartbeat: timedelta | None = None,
) -> R:
    """Run one EHR activity on the tenant's queue."""
    return await workflow.execute_activity_method(
        step,
        order,
        task_queue=ehr_queue(tenant),
        start_to_close_timeout=start_to_close,
        heartbeat_timeout=heartbeat,
        retry_policy=retry,
    )


async def pure_step(step: Callable[[Any, A], Awaitable[R]], order: A) -> R:
    """Run one pure step (no EHR) as a local activity."""
    return await workflow.execute_local_activity_method(
        step, order, start_to_close_timeout=PURE_STEP_TIMEOUT, retry_policy=PURE_STEP_RETRY
    )


class StepFailed(Exception):
    """A step failed; ``error_class`` and ``reason`` say why (no PHI). ``sent_at``: for an
    ambiguous outcome, the instant by which its unanswered request had certainly been sent."""

    def __init__(
        self,
        error_class: str,
        reason: str,
        retry_after: timedelta | None = None,
        sent_at: datetime | None = None,
    ) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason
        self.retry_after = retry_after
        self.sent_at = sent_at

    @property
    def retryable(self) -> bool:
        return self.error_class in RETRYABLE


def failure_of(
    err: BaseException,
    unanswered: ErrorClass = ErrorClass.TRANSIENT,
    unclassified: ErrorClass | None = None,
) -> StepFailed:
    """Local activities fail with the ApplicationError itself, regular ones wrap it. A failure
    without an answer (the activity timed out, e.g. its worker died) is ``unanswered``; so is an
    exception nobody classified (its type is not in the taxonomy) when ``unclassified`` is given:
    it says nothing about what the EHR did, so it is never a reason to stop for good."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type:
        if cause.type not in TAXONOMY:  # its message is an exception's text: anything at all
            unexpected = f"the step failed unexpectedly ({safe_reason(cause.type, 64)})"
            return StepFailed((unclassified.value if unclassified else cause.type), unexpected)
        details = list(cause.details)
        seconds = details[0] if details else None
        retry_after = timedelta(seconds=seconds) if isinstance(seconds, int | float) else None
        sent = details[1] if len(details) > 1 else None
        sent_at = datetime.fromisoformat(sent) if isinstance(sent, str) else None
        return StepFailed(cause.type, safe_reason(cause.message), retry_after, sent_at)
    return StepFailed(unanswered.value, f"no answer from the step ({type(cause).__name__})")


def reason_of(err: BaseException) -> tuple[str, str]:
    """Error class and message of a failed activity (local ones fail with the error itself)."""
    failure = failure_of(err)
    return failure.error_class, failure.reason
