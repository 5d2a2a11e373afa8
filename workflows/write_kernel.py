"""The kernel of a clinical write: its state (one model, ``WriteRecord``) and how it moves
between states. Activity options and the step failure are the workflow kernel's
(workflows/kernel.py); the handlers a person uses, workflows/person_waits.py.

ClinicalWrite (clinical_write.py) is built in layers, each a module with one job:
``WriteKernel`` (this) → ``WriteChecks`` (write_checks.py: read-back, the one-copy check, finding
what an unanswered create left) → ``WriteSending`` (write_sending.py: the pure steps and the
attempts, with the quiet period after an unanswered create) → ``ClinicalWrite`` (entry, queries,
decisions and re-checks).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError

from activities.errors import ErrorClass
from activities.models import (
    Confirmation,
    WritePlan,
    WriteReceipt,
)
from workflows import search_attributes as sa
from workflows import write_metrics
from workflows.audit_trail import AuditTrail
from workflows.contract import (
    EhrExchange,
    ResolutionAction,
    WriteCommand,
    WriteState,
    WriteStatus,
)
from workflows.kernel import StepFailed, ehr_step, failure_of, request_id
from workflows.landing import LandingWindow
from workflows.person_waits import PersonWaits

A = TypeVar("A")
R = TypeVar("R")

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


#: ``workflow.patched`` id of the write as started today: it stands for every earlier patch a
#: write meets on its way (input limits, the audit ledger, exactly-once v2) and for the pure
#: steps run as one (CommandSteps.prepare). Each patch costs a marker and a search-attribute
#: upsert (the SDK records TemporalChangeVersion) in every history: one instead of three.
CURRENT_SHAPE = "write-shape-2026-11"

#: A write waiting for weeks re-checks every 4 h; past this many history events it continues as a
#: new run carrying its state (Temporal warns at 10k events and stops a run at 50k).
CONTINUE_AS_NEW_AFTER_EVENTS = 2000


class WriteRecord(BaseModel):
    """Everything a write knows, in one model: the workflow keeps its state here, and a long wait
    hands it, whole, to its next run (continue-as-new). The fields and their names are the wire
    shape runs have carried over since continue-as-new existed (``ContinuedWrite``). (One
    argument: Temporal drops type hints when the argument count differs from the signature's,
    so an optional second argument would arrive as a dict.)"""

    command: WriteCommand
    status: WriteStatus
    plan: WritePlan | None = None
    receipt: WriteReceipt | None = None
    ehr_state: dict[str, Any] | None = None
    differences: list[str] = Field(
        default_factory=list, description="field paths where the last read-back differed"
    )
    ehr_timeout_seconds: float = 10.0
    search_lag_seconds: float = 0.0
    reconcile_after_seconds: float = 0.0
    maybe_landed: bool = Field(
        default=False, description="an attempt went unanswered: it may have created the resource"
    )
    rechecks: int = 0
    landing: LandingWindow = Field(default_factory=LandingWindow)
    withdrawal: dict[str, Any] | None = Field(
        default=None, description="how an extra copy is withdrawn"
    )
    acknowledged_at: datetime | None = None

    @property
    def ehr_timeout(self) -> timedelta:
        return timedelta(seconds=self.ehr_timeout_seconds)

    @property
    def search_lag(self) -> timedelta:
        return timedelta(seconds=self.search_lag_seconds)

    @property
    def reconcile_after(self) -> timedelta:
        return timedelta(seconds=self.reconcile_after_seconds)


#: The name continue-as-new inputs are known by (tests and tools build them by hand).
ContinuedWrite = WriteRecord


class WriteKernel(PersonWaits[WriteStatus]):
    """State and bookkeeping shared by every layer of ClinicalWrite."""

    # set by ClinicalWrite.__init__; only ``_record`` is carried across runs
    _record: WriteRecord
    _search_updates: list[SearchAttributeUpdate[Any]]
    _audit: AuditTrail
    # exactly once where the EHR cannot deduplicate (README: "Write safety")
    _v2: bool  # set by run(): histories recorded before it replay without it
    _current: bool  # started with CURRENT_SHAPE (set by __init__)
    _attempt_send_by: datetime | None
    _in_attempt: Confirmation | None  # the last attempt's own read-back and count, unused yet

    @property
    def _status(self) -> WriteStatus:
        return self._record.status

    @_status.setter
    def _status(self, status: WriteStatus) -> None:
        self._record.status = status

    @property
    def _command(self) -> WriteCommand:
        return self._record.command

    def _publish(self, state: WriteState, began_waiting: bool) -> None:
        if began_waiting:
            self._search_updates.append(sa.WAITING_SINCE.value_set(workflow.now()))
        self._search_updates.append(sa.STATE.value_set(state.value))
        if state.is_settled:
            write_metrics.settled(self._status)
        if state in sa.PUBLISHED_STATES:
            # one upsert (one history event, one visibility write) for everything since the last
            workflow.upsert_search_attributes(self._search_updates)
            self._search_updates = []
            # the ledger takes a write's lines when it settles, or waits (_sleep); a write on
            # its way hands ``in_flight`` over with those (one hand-over for a quick write)
            if state.is_settled or not self._current:
                self._audit.due = True

    async def _sleep(self, duration: timedelta) -> None:
        """Wait on the write's way (a backoff, a quiet period, an index catching up), with its
        ledger lines so far handed over first."""
        if self._current:
            self._audit.due = True
        await workflow.sleep(duration)

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
        return request_id(step, len(self._status.ehr_log) + 1)

    async def _ehr(
        self,
        step: Callable[[Any, A], Awaitable[R]],
        order: A,
        start_to_close: timedelta,
        retry: RetryPolicy,
    ) -> R:
        """One EHR activity for this write's tenant."""
        return await ehr_step(step, order, self._command.tenant, start_to_close, retry)

    def _acknowledge(self, receipt: WriteReceipt, detail: str) -> None:
        self._record.receipt = receipt
        self._record.acknowledged_at = workflow.now()
        self._status.resource = receipt.reference
        self._status.version = receipt.version
        self._move(WriteState.ACKNOWLEDGED, detail)

    def _read_failed(self, step: str, err: ActivityError) -> StepFailed:
        unclassified = ErrorClass.TRANSIENT if self._v2 else None
        failure = failure_of(err, ErrorClass.TRANSIENT, unclassified)
        self._log(step, 0, f"{failure.error_class}: {failure.reason}")
        return failure

    def _expected(self) -> dict[str, object]:
        record = self._record
        assert record.plan is not None and record.receipt is not None
        if record.receipt.sent is not None:
            return record.receipt.sent
        assert record.plan.create is not None
        return record.plan.create.comparable_body()
