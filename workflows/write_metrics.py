"""What a ClinicalWrite counts as it goes (activities/metrics.py names them). Called from workflow
code only: the instruments are replay-safe, and every value here comes from the workflow's own
state and clock, so a replay neither double-counts nor changes anything."""

from __future__ import annotations

from temporalio import workflow

from activities import metrics
from activities.errors import ErrorClass
from workflows.contract import WriteState, WriteStatus

#: Read-back outcomes that mean "the EHR does not hold what we wrote".
_MISMATCH_CLASSES = frozenset({ErrorClass.MISMATCH.value, ErrorClass.NOT_FOUND.value})


def _labels(status: WriteStatus, **extra: str) -> dict[str, str]:
    return metrics.labels(status.tenant, status.vendor, status.resource_type, **extra)


def settled(status: WriteStatus) -> None:
    """The write just settled into ``status.state`` (terminal, or waiting for a person)."""
    state = status.state
    metrics.WRITES.add(1, _labels(status, state=state.value))
    if state is WriteState.VERIFIED:
        elapsed = workflow.now() - workflow.info().start_time
        metrics.TIME_TO_VERIFIED.record(elapsed.total_seconds(), _labels(status))
    if state is WriteState.CONFLICT:
        metrics.CONFLICTS.add(1, _labels(status))
    if state is WriteState.REJECTED and status.error_class == ErrorClass.VALIDATION.value:
        metrics.VALIDATION_REJECTIONS.add(1, _labels(status))
    if state is WriteState.PENDING_CONFIRMATION and status.error_class == ErrorClass.DUPLICATE:
        metrics.DUPLICATE_DETECTIONS.add(1, _labels(status, state=state.value))
    mismatch = state is WriteState.PENDING_CONFIRMATION and status.error_class in _MISMATCH_CLASSES
    if mismatch or state is WriteState.MISMATCH:
        metrics.RECONCILIATION_MISMATCHES.add(
            1, _labels(status, error_class=status.error_class or "")
        )
    if any(x.outcome.startswith(ErrorClass.AMBIGUOUS.value) for x in status.ehr_log):
        metrics.AMBIGUOUS_OUTCOMES.add(1, _labels(status, state=state.value))


def retried(status: WriteStatus, error_class: str) -> None:
    """An attempt failed with a retryable ``error_class`` and another one will follow."""
    metrics.RETRIES.add(1, _labels(status, error_class=error_class))


def joined_existing(status: WriteStatus) -> None:
    """The write found its resource already in the EHR (an earlier attempt's) and took it."""
    metrics.DUPLICATE_DETECTIONS.add(1, _labels(status, state=WriteState.ACKNOWLEDGED.value))
