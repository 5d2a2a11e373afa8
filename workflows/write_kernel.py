"""The kernel of a clinical write: its state, how it moves between states, the activity options
its steps share, and the step failure the other parts raise and read.

ClinicalWrite (clinical_write.py) is built in layers, each a module with one job:
``WriteKernel`` (this) → ``WriteChecks`` (write_checks.py: read-back, the one-copy check, finding
what an unanswered create left) → ``WriteSending`` (write_sending.py: the pure steps and the
attempts, with the quiet period after an unanswered create) → ``ClinicalWrite`` (entry, queries,
decisions and re-checks).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import search_attributes as sa
from workflows import write_metrics
from workflows.audit_trail import AuditTrail
from workflows.contract import (
    EhrExchange,
    ResolutionAction,
    Transition,
    WriteCommand,
    WriteState,
    WriteStatus,
)
from workflows.decisions import DecisionInbox
from workflows.landing import LandingWindow
from workflows.task_queues import ehr_task_queue

with workflow.unsafe.imports_passed_through():
    from activities.errors import (
        NON_RETRYABLE_TYPES,
        RETRYABLE,
        TAXONOMY,
        ErrorClass,
    )
    from activities.models import (
        WritePlan,
        WriteReceipt,
    )

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
#: While waiting for a person, the write re-checks the EHR by itself after these delays.
RECHECK_DELAYS = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=4),
)


#: The one-copy check searches this often for a copy the index does not show yet, waiting the
#: tenant's index lag (at least COPY_SEARCH_WAIT), doubled each time.
COPY_SEARCHES = 4
COPY_SEARCH_WAIT = timedelta(seconds=5)

#: What a person may decide on a reconciliation mismatch: accept the EHR's version (confirm), read
#: again (reverify), or stop tracking the write (abandon).
MISMATCH_ACTIONS = frozenset(
    {ResolutionAction.CONFIRM, ResolutionAction.REVERIFY, ResolutionAction.ABANDON}
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
    err: ActivityError | ApplicationError,
    unanswered: ErrorClass,
    unclassified: ErrorClass | None = None,
) -> StepFailed:
    """Local activities fail with the ApplicationError itself, regular ones wrap it. A failure
    without an answer (the activity timed out, e.g. its worker died) is ``unanswered``; so is an
    exception nobody classified (its type is not in the taxonomy) when ``unclassified`` is given:
    it says nothing about what the EHR did, so it is never a reason to stop for good."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type:
        if unclassified is not None and cause.type not in TAXONOMY:
            return StepFailed(unclassified.value, f"the step failed unexpectedly ({cause.type})")
        details = list(cause.details)
        seconds = details[0] if details else None
        retry_after = timedelta(seconds=seconds) if isinstance(seconds, int | float) else None
        sent = details[1] if len(details) > 1 else None
        sent_at = datetime.fromisoformat(sent) if isinstance(sent, str) else None
        return StepFailed(cause.type, cause.message, retry_after, sent_at)
    return StepFailed(unanswered.value, f"no answer from the step ({type(cause).__name__})")


#: A write waiting for weeks re-checks every 4 h; past this many history events it continues as a
#: new run carrying its state (Temporal warns at 10k events and stops a run at 50k).
CONTINUE_AS_NEW_AFTER_EVENTS = 2000


class ContinuedWrite(BaseModel):
    """What a long wait hands over to its next run (continue-as-new): the command and everything
    the previous run knew. (One argument: Temporal drops type hints when the argument count
    differs from the signature's, so an optional second argument would arrive as a dict.)"""

    command: WriteCommand
    status: WriteStatus
    plan: WritePlan | None
    receipt: WriteReceipt | None
    ehr_state: dict[str, Any] | None
    differences: list[str]
    ehr_timeout_seconds: float
    search_lag_seconds: float
    reconcile_after_seconds: float
    maybe_landed: bool
    rechecks: int
    landing: LandingWindow = LandingWindow()
    withdrawal: dict[str, Any] | None = None
    acknowledged_at: datetime | None = None


class WriteKernel:
    """State and bookkeeping shared by every layer of ClinicalWrite."""

    # the write's state, set by ClinicalWrite.__init__ (one model of it: ContinuedWrite)
    _command: WriteCommand
    _status: WriteStatus
    _plan: WritePlan | None
    _receipt: WriteReceipt | None
    _ehr_state: dict[str, object] | None
    _differences: list[str]  # field paths where the last read-back differed
    _ehr_timeout: timedelta
    _search_lag: timedelta
    _reconcile_after: timedelta
    _maybe_landed: bool  # an attempt went unanswered: it may have created the resource
    _decisions: DecisionInbox
    _search_updates: list[SearchAttributeUpdate[Any]]
    _audit: AuditTrail
    _rechecks: int
    # exactly once where the EHR cannot deduplicate (README: "Write safety")
    _v2: bool  # set by run(): histories recorded before it replay without it
    _landing: LandingWindow
    _withdrawal: dict[str, Any] | None  # how an extra copy is withdrawn
    _acknowledged_at: datetime | None
    _attempt_send_by: datetime | None

    def _move(self, state: WriteState, detail: str | None = None) -> None:
        if state.is_waiting_for_human and not self._status.state.is_waiting_for_human:
            self._status.waiting_since = workflow.now()
            self._search_updates.append(sa.WAITING_SINCE.value_set(workflow.now()))
        elif not state.is_waiting_for_human:
            # the search attribute keeps "when it last started waiting"; filter on the state
            self._status.waiting_since = self._status.next_check_at = None
        self._status.state = state
        self._status.transitions.append(Transition(state=state, at=workflow.now(), detail=detail))
        self._search_updates.append(sa.STATE.value_set(state.value))
        if state.is_settled:
            write_metrics.settled(self._status)
        if state in sa.PUBLISHED_STATES:
            # one upsert (one history event, one visibility write) for everything since the last
            workflow.upsert_search_attributes(self._search_updates)
            self._search_updates = []
            self._audit.due = True

    def _fail(self, state: WriteState, failure: StepFailed) -> None:
        self._status.error_class = failure.error_class
        self._status.reason = failure.reason
        self._search_updates.append(sa.ERROR_CLASS.value_set(failure.error_class))
        self._move(state, failure.reason)

    def _settle(self, failure: StepFailed) -> None:
        """Where a failed write goes: a person decides unless retrying could never help."""
        if failure.error_class == ErrorClass.CONFLICT:
            self._fail(WriteState.CONFLICT, failure)
        elif failure.retryable or failure.error_class == ErrorClass.DUPLICATE:
            self._fail(WriteState.PENDING_CONFIRMATION, failure)
        else:
            self._fail(WriteState.REJECTED, failure)

    def _log(self, step: str, attempt: int, outcome: str) -> None:
        self._status.ehr_log.append(
            EhrExchange(step=step, attempt=attempt, at=workflow.now(), outcome=outcome)
        )

    def _request_id(self, step: str) -> str:
        """PHI-free correlation id the EHR sees as X-Request-Id."""
        return f"{workflow.info().workflow_id}/{step}/{len(self._status.ehr_log) + 1}"

    @property
    def _ehr_queue(self) -> str:
        """EHR activities run on the tenant's own task queue, whose rate limit Temporal enforces
        across every worker (see workers/worker.py)."""
        return ehr_task_queue(workflow.info().task_queue, self._command.tenant)

    def _acknowledge(self, receipt: WriteReceipt, detail: str) -> None:
        self._receipt = receipt
        self._acknowledged_at = workflow.now()
        self._status.resource = receipt.reference
        self._status.version = receipt.version
        self._move(WriteState.ACKNOWLEDGED, detail)

    def _read_failed(self, step: str, err: ActivityError) -> StepFailed:
        unclassified = ErrorClass.TRANSIENT if self._v2 else None
        failure = failure_of(err, ErrorClass.TRANSIENT, unclassified)
        self._log(step, 0, f"{failure.error_class}: {failure.reason}")
        return failure

    def _expected(self) -> dict[str, object]:
        assert self._plan is not None and self._receipt is not None
        if self._receipt.sent is not None:
            return self._receipt.sent
        assert self._plan.create is not None
        return self._plan.create.comparable_body()
