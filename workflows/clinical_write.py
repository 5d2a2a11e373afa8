"""ClinicalWrite: one clinical write, validate -> map -> authorize -> write -> verify.

The workflow is the outbox: the command is durable the moment it starts. Each step's result is
recorded in history, so a worker crash resumes after the last completed step and never re-sends a
write that was acknowledged. EHR attempts are paced by the workflow itself (full jitter on top of
Retry-After, a budget per clinical urgency) so that every attempt and its answer is on the record.
What cannot be decided automatically waits for a person (``resolve`` update) and, meanwhile,
re-checks the EHR on a widening schedule instead of failing silently.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import search_attributes as sa
from workflows import write_metrics
from workflows.audit_trail import AuditTrail
from workflows.budgets import BUDGETS
from workflows.contract import (
    EhrExchange,
    Resolution,
    ResolutionAction,
    Transition,
    WriteCommand,
    WriteDetails,
    WriteState,
    WriteStatus,
)
from workflows.decisions import DecisionInbox
from workflows.landing import LandingWindow
from workflows.task_queues import ehr_task_queue
from workflows.write_start import NO_ARGUMENT, Refused, open_write, unread_command

with workflow.unsafe.imports_passed_through():
    from activities.command_steps import CommandSteps
    from activities.crosswalk import Crosswalk, CrosswalkInput
    from activities.deadline import CLOCK_SKEW
    from activities.ehr_steps import EhrSteps
    from activities.errors import (
        NON_RETRYABLE_TYPES,
        RETRYABLE,
        TAXONOMY,
        ErrorClass,
        full_jitter_delay,
    )
    from activities.models import (
        CommandInput,
        Copies,
        EhrCopies,
        EhrLocate,
        EhrUpdate,
        EhrVerify,
        EhrWithdraw,
        EhrWrite,
        WritePlan,
        WriteReceipt,
    )
    from adapters.compensation import is_withdrawn
    from adapters.fhir_r4 import CreateRequest, DedupStrategy
    from adapters.internal_refs import has_internal_refs
    from adapters.schema_drift import dropped_extensions

#: The pure steps retry only on infrastructure hiccups, never on a decided failure.
_PURE_STEP_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=NON_RETRYABLE_TYPES)
_PURE_STEP_TIMEOUT = timedelta(seconds=10)
#: Reads (verify, locate) are safe to repeat: Temporal retries them, paced by the activity's jitter.
_READ_RETRY = RetryPolicy(
    maximum_attempts=6,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)
#: Writes are attempted once per activity; the workflow decides about the next attempt.
_ONE_ATTEMPT = RetryPolicy(maximum_attempts=1)
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
_MISMATCH_ACTIONS = frozenset(
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


def _failure_of(
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


@workflow.defn(name="ClinicalWrite")
class ClinicalWrite:
    @workflow.init
    def __init__(self, start: RawValue = NO_ARGUMENT) -> None:
        # the argument arrives raw and is opened here: no input can fail the workflow task
        # (workflows/write_start.py); histories from before the limits replay without them
        opened = open_write(
            start,
            ContinuedWrite,
            workflow.payload_converter(),
            limits=workflow.patched("input-limits"),
            continued_run=workflow.info().continued_run_id is not None,
        )
        self._refused = opened if isinstance(opened, Refused) else None
        self._continued = opened if isinstance(opened, ContinuedWrite) else None
        command = self._continued.command if self._continued else opened
        if not isinstance(command, WriteCommand):
            command = unread_command(workflow.info().workflow_id)
        self._command = command
        self._status = WriteStatus(
            workflow_id=workflow.info().workflow_id,
            tenant=command.tenant,
            interaction=command.interaction,
            state=WriteState.REQUESTED,
            transitions=[Transition(state=WriteState.REQUESTED, at=workflow.now())],
        )
        self._plan: WritePlan | None = None
        self._receipt: WriteReceipt | None = None
        self._ehr_state: dict[str, object] | None = None
        self._differences: list[str] = []  # field paths where the last read-back differed
        self._ehr_timeout = timedelta(seconds=10)
        self._search_lag = timedelta(0)
        self._reconcile_after = timedelta(0)
        self._maybe_landed = False  # an attempt went unanswered: it may have created the resource
        self._decisions = DecisionInbox()
        self._search_updates: list[SearchAttributeUpdate[Any]] = []
        self._audit = AuditTrail()
        self._rechecks = 0
        # exactly once where the EHR cannot deduplicate (README: "Write safety")
        self._v2 = False  # set by run(): histories recorded before it replay without it
        self._landing = LandingWindow()
        self._withdrawal: dict[str, Any] | None = None  # how an extra copy is withdrawn
        self._acknowledged_at: datetime | None = None
        self._attempt_send_by: datetime | None = None
        if self._continued:
            self._resume(self._continued)

    def _resume(self, carried: ContinuedWrite) -> None:
        self._status, self._plan, self._receipt = carried.status, carried.plan, carried.receipt
        self._ehr_state, self._differences = carried.ehr_state, carried.differences
        self._ehr_timeout = timedelta(seconds=carried.ehr_timeout_seconds)
        self._search_lag = timedelta(seconds=carried.search_lag_seconds)
        self._reconcile_after = timedelta(seconds=carried.reconcile_after_seconds)
        self._maybe_landed, self._rechecks = carried.maybe_landed, carried.rechecks
        self._landing, self._withdrawal = carried.landing, carried.withdrawal
        self._acknowledged_at = carried.acknowledged_at

    def _carry(self) -> ContinuedWrite:
        return ContinuedWrite(
            command=self._command,
            status=self._status,
            plan=self._plan,
            receipt=self._receipt,
            ehr_state=self._ehr_state,
            differences=self._differences,
            ehr_timeout_seconds=self._ehr_timeout.total_seconds(),
            search_lag_seconds=self._search_lag.total_seconds(),
            reconcile_after_seconds=self._reconcile_after.total_seconds(),
            maybe_landed=self._maybe_landed,
            rechecks=self._rechecks,
            landing=self._landing,
            withdrawal=self._withdrawal,
            acknowledged_at=self._acknowledged_at,
        )

    # --- what callers can ask and say -------------------------------------------------------

    @workflow.query
    def status(self) -> WriteStatus:
        return self._status

    @workflow.query
    def details(self) -> WriteDetails:
        sent = None
        if self._receipt and self._receipt.sent:
            sent = self._receipt.sent
        elif self._plan and self._plan.create:
            sent = self._plan.create.body
        elif self._plan and self._plan.update:
            sent = self._plan.update.body
        return WriteDetails(
            status=self._status,
            command=None if self._refused else self._command,
            sent=sent,
            ehr_state=self._ehr_state,
        )

    @workflow.update
    async def resolve(self, resolution: Resolution) -> WriteStatus:
        """A person's decision on a waiting write; returns the status once it has been acted on."""
        await self._decisions.deliver(resolution)
        return self._status

    @resolve.validator
    def _resolve_allowed(self, resolution: Resolution) -> None:
        state = self._status.state
        if not state.is_waiting_for_human:
            raise ValueError(f"write is '{state}', not waiting for a decision")
        if self._decisions.busy:
            raise ValueError("a decision is already being applied")
        if not self._decisions.waiting:
            raise ValueError(
                "an automatic re-check of the EHR is running; send the decision again when it "
                "has finished (see next_check_at and the last transition)"
            )
        if resolution.action is ResolutionAction.OVERRIDE and state is not WriteState.CONFLICT:
            raise ValueError("override is only for a write in conflict")
        if state is WriteState.MISMATCH and resolution.action not in _MISMATCH_ACTIONS:
            allowed = ", ".join(action.value for action in _MISMATCH_ACTIONS)
            raise ValueError(f"a reconciliation mismatch takes one of: {allowed}")
        expected = self._status.resource_type
        reference = resolution.reference
        if reference and expected and not reference.startswith(f"{expected}/"):
            raise ValueError(f"reference must be a {expected}")

    # --- state bookkeeping --------------------------------------------------------------------

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

    async def _settle_send(self, failure: StepFailed) -> None:
        """A write that stopped after an unanswered attempt may be in the chart anyway (the EHR
        committed, then a later attempt was refused): look before calling it rejected, so a saga
        never leaves an orphan behind a step it believes failed. ``rejected`` promises nothing
        was written: after an unanswered create that takes searches until its quiet period has
        passed; a search that fails, or a type search cannot show, leaves the write waiting."""
        if failure.retryable or not self._maybe_landed:
            self._settle(failure)
        elif not self._v2:
            if await self._locate():
                await self._check()
            else:
                self._settle(failure)
        elif self._plan is None or self._plan.create is None:
            self._settle(failure)
        else:
            try:
                found = await self._search_until_quiet(give_up_at=None)
            except StepFailed as unknown:
                self._fail(
                    WriteState.PENDING_CONFIRMATION,
                    StepFailed(
                        unknown.error_class,
                        f"{failure.reason}; an earlier unanswered attempt may have landed: "
                        f"{unknown.reason}",
                    ),
                )
                return
            if found is None:
                self._settle(failure)
            else:
                self._acknowledge(found, "found in the EHR: an earlier unanswered attempt landed")
                await self._check()

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

    # --- the write ------------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: RawValue = NO_ARGUMENT) -> WriteStatus:
        if self._refused:  # not a command: nothing to write, nobody to wait for; on the record
            self._fail(WriteState.REJECTED, StepFailed(ErrorClass.VALIDATION, self._refused.reason))
            await self._audit.record(self._command, self._status)
            return self._status
        command = self._command
        # writes recorded before the ledger existed replay without it
        audited = workflow.patched("audit-ledger")
        self._v2 = workflow.patched("exactly-once-v2")
        recorder = asyncio.create_task(self._audit.run(command, self._status)) if audited else None
        if not self._continued:
            await self._write(command)
        await self._await_decisions()
        if (
            self._status.state is WriteState.VERIFIED
            and command.reconcile
            and self._reconcile_after
        ):
            await workflow.sleep(self._reconcile_after)
            await self._reconcile()
            await self._await_decisions()
        if recorder:
            await self._audit.record(command, self._status)
            recorder.cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)  # refused ones answered
        return self._status

    async def _write(self, command: WriteCommand) -> None:
        if workflow.info().typed_search_attributes.get(sa.STATE) is None:
            # started by something other than WritebackClient.submit, which sets these
            workflow.upsert_search_attributes(
                [
                    sa.STATE.value_set(WriteState.REQUESTED.value),
                    sa.TENANT.value_set(command.tenant),
                    sa.URGENCY.value_set(command.urgency.value),
                ]
            )
        try:
            await self._prepare()
            await self._send()
        except StepFailed as failure:
            await self._settle_send(failure)
        else:
            await self._check()

    async def _prepare(self) -> None:
        command = self._command
        step = CommandInput(
            tenant=command.tenant,
            resource=command.resource,
            command_identifier=command.command_identifier,
            interaction=command.interaction,
            target=command.target,
            requested_by=command.requested_by,
            on_behalf_of=command.on_behalf_of,
            requested_at=workflow.now(),
            role=command.role,
            purpose=command.purpose,
        )
        timeout, retry = _PURE_STEP_TIMEOUT, _PURE_STEP_RETRY
        try:
            validated = await workflow.execute_local_activity_method(
                CommandSteps.validate, step, start_to_close_timeout=timeout, retry_policy=retry
            )
            self._status.vendor = validated.vendor
            self._status.resource_type = validated.resource_type
            self._ehr_timeout = timedelta(seconds=validated.ehr_timeout_seconds)
            self._search_lag = timedelta(seconds=validated.search_lag_seconds)
            self._reconcile_after = timedelta(seconds=validated.reconcile_after_seconds)
            self._landing = LandingWindow(
                quiet_seconds=validated.quiet_period_seconds,
                resend_after_quiet=validated.resend_after_quiet,
                searchable=validated.searchable,
            )
            self._withdrawal = validated.withdrawal
            self._search_updates.extend(
                [
                    sa.VENDOR.value_set(validated.vendor),
                    sa.RESOURCE_TYPE.value_set(validated.resource_type),
                ]
            )
            self._move(WriteState.VALIDATED)
            if has_internal_refs(step.resource) and workflow.patched("identity-crosswalk"):
                step = await self._crosswalk(step)
            self._plan = await workflow.execute_local_activity_method(
                CommandSteps.map, step, start_to_close_timeout=timeout, retry_policy=retry
            )
            authorization = await workflow.execute_local_activity_method(
                CommandSteps.authorize, step, start_to_close_timeout=timeout, retry_policy=retry
            )
        except (ActivityError, ApplicationError) as err:
            raise _failure_of(err, ErrorClass.TRANSIENT) from None
        self._status.authorization = authorization
        if authorization.decision != "allow":
            raise StepFailed(ErrorClass.AUTHORIZATION.value, authorization.summary)
        self._move(
            WriteState.AUTHORIZED,
            f"{authorization.summary} for {authorization.requested_by}; "
            f"scopes {' '.join(authorization.scopes)}",
        )

    async def _crosswalk(self, step: CommandInput) -> CommandInput:
        """Internal ids -> the tenant's ids (activities/crosswalk.py); a miss rejects the write."""
        result = await workflow.execute_activity_method(
            Crosswalk.resolve,
            CrosswalkInput(
                tenant=step.tenant,
                request_id=self._request_id("crosswalk"),
                resource=step.resource,
                requested_at=workflow.now(),
            ),
            task_queue=self._ehr_queue,
            start_to_close_timeout=self._ehr_timeout * 4 + timedelta(seconds=5),
            retry_policy=_READ_RETRY,
        )
        return step.model_copy(update={"resource": result.resource})

    async def _send(self, override: bool = False) -> None:
        """Attempt the write until acknowledged, a failure retrying cannot fix, or the urgency's
        budget is spent (then StepFailed with a retryable class: a person takes over)."""
        assert self._plan is not None
        budget = BUDGETS[self._command.urgency]
        started = workflow.now()
        attempt = 0
        dedup = self._plan.create.dedup.value if self._plan.create else "if-match"
        self._move(WriteState.IN_FLIGHT, f"dedup: {dedup}")
        while True:
            if self._needs_search_before_resend():
                found = await self._search_until_quiet(give_up_at=started + budget.max_duration)
                if found is not None:
                    self._acknowledge(found, "found in the EHR: an unanswered attempt landed")
                    return
            attempt += 1
            self._status.attempts += 1
            try:
                receipt = await self._attempt(override)
            except StepFailed as failure:
                self._log("write", attempt, f"{failure.error_class}: {failure.reason}")
                if not failure.retryable:
                    raise
                delay = full_jitter_delay(attempt, failure.retry_after, workflow.random())
                if failure.error_class == ErrorClass.AMBIGUOUS:
                    self._maybe_landed = True
                    if self._v2 and self._plan.create:
                        self._landing.after_unanswered(self._sent_by(failure))
                    elif not self._v2:
                        delay = max(delay, self._search_lag)
                spent = workflow.now() - started + delay
                if attempt >= budget.max_attempts or spent > budget.max_duration:
                    raise StepFailed(
                        failure.error_class,
                        f"retry budget ({self._command.urgency.value}) spent after {attempt} "
                        f"attempts; last: {failure.reason}",
                    ) from None
                write_metrics.retried(self._status, failure.error_class)
                if self._v2:  # a write backing off says when it tries next
                    self._status.next_check_at = workflow.now() + delay
                await workflow.sleep(delay)
                if self._v2:
                    self._status.next_check_at = None
                continue
            if not receipt.created:
                write_metrics.joined_existing(self._status)
            how = "created" if receipt.created else "already present"
            self._log("write", attempt, f"HTTP {receipt.status_code}: {how}")
            self._acknowledge(receipt, f"{how} (HTTP {receipt.status_code})")
            return

    def _needs_search_before_resend(self) -> bool:
        """After an unanswered create, a tenant without conditional create (search-before-create,
        fingerprint) may hold a copy its search does not show yet: no blind re-send."""
        create = self._plan.create if self._plan else None
        return (
            self._v2
            and create is not None
            and create.dedup is not DedupStrategy.CONDITIONAL_CREATE
            and self._landing.needs_search()
        )

    def _sent_by(self, failure: StepFailed) -> datetime:
        """The latest instant a request of the unanswered attempt could have been sent: the
        attempt's deadline, or earlier when the activity said when it sent (clocks may differ)."""
        latest = self._attempt_send_by or workflow.now()
        if failure.sent_at is not None:
            latest = min(latest, failure.sent_at + CLOCK_SKEW)
        return latest

    async def _search_until_quiet(self, give_up_at: datetime | None) -> WriteReceipt | None:
        """Search for what unanswered attempts may have left until their quiet period has
        passed (workflows/landing.py): the receipt as soon as the EHR shows a copy, None when a
        search made after the quiet period still finds nothing (re-sending is then safe).
        Raises StepFailed when no search can prove it (the tenant never re-sends this type, or
        search cannot show it), when a search fails, or when ``give_up_at`` comes first."""
        landing = self._landing
        while True:
            searched_at = workflow.now()
            found = await self._look()
            if found is not None:
                return found
            if not landing.resend_after_quiet:
                raise StepFailed(
                    ErrorClass.AMBIGUOUS.value,
                    "an unanswered create may still be in the EHR, which may keep this type out "
                    "of search (or the tenant never re-sends): nothing re-sent; the write "
                    "searches by itself until it shows up, or a person decides",
                )
            if landing.until is None or searched_at >= landing.until:
                landing.cleared = True
                self._log("locate", 0, "nothing found after the quiet period: safe to re-send")
                return None
            wait = landing.next_search_in(workflow.now())
            if give_up_at is not None and workflow.now() + wait > give_up_at:
                raise StepFailed(
                    ErrorClass.AMBIGUOUS.value,
                    f"retry budget ({self._command.urgency.value}) spent while an unanswered "
                    f"attempt may still land (quiet period until {landing.until:%H:%M:%S} "
                    "UTC); searches found nothing yet and nothing was re-sent",
                )
            await workflow.sleep(wait)

    async def _attempt(self, override: bool) -> WriteReceipt:
        assert self._plan is not None
        # a read or search, maybe a vread, and a write, each bounded by the tenant's HTTP timeout
        timeout = self._ehr_timeout * 3 + timedelta(seconds=5)
        # no request of this attempt leaves the worker after send_by (activities/deadline.py):
        # time to be picked up from the task queue, then the activity's own timeout
        self._attempt_send_by = workflow.now() + 2 * timeout
        try:
            if self._plan.update:
                assert self._command.base_version is not None
                return await workflow.execute_activity_method(
                    EhrSteps.update,
                    EhrUpdate(
                        tenant=self._command.tenant,
                        request_id=self._request_id("update"),
                        request=self._plan.update,
                        base_version=self._command.base_version,
                        override=override,
                        send_by=self._attempt_send_by,
                    ),
                    task_queue=self._ehr_queue,
                    start_to_close_timeout=timeout,
                    retry_policy=_ONE_ATTEMPT,
                )
            assert self._plan.create is not None
            return await workflow.execute_activity_method(
                EhrSteps.write,
                EhrWrite(
                    tenant=self._command.tenant,
                    request_id=self._request_id("write"),
                    request=self._plan.create,
                    send_by=self._attempt_send_by,
                ),
                task_queue=self._ehr_queue,
                start_to_close_timeout=timeout,
                retry_policy=_ONE_ATTEMPT,
            )
        except ActivityError as err:
            # no answer at all (the worker died, the call hung), or an exception nobody
            # classified: the EHR may have committed
            unclassified = ErrorClass.AMBIGUOUS if self._v2 else None
            raise _failure_of(err, ErrorClass.AMBIGUOUS, unclassified) from None

    def _acknowledge(self, receipt: WriteReceipt, detail: str) -> None:
        self._receipt = receipt
        self._acknowledged_at = workflow.now()
        self._status.resource = receipt.reference
        self._status.version = receipt.version
        self._move(WriteState.ACKNOWLEDGED, detail)

    def _read_failed(self, step: str, err: ActivityError) -> StepFailed:
        unclassified = ErrorClass.TRANSIENT if self._v2 else None
        failure = _failure_of(err, ErrorClass.TRANSIENT, unclassified)
        self._log(step, 0, f"{failure.error_class}: {failure.reason}")
        return failure

    def _expected(self) -> dict[str, object]:
        assert self._plan is not None and self._receipt is not None
        if self._receipt.sent is not None:
            return self._receipt.sent
        assert self._plan.create is not None
        return self._plan.create.comparable_body()

    async def _verification_failure(self) -> StepFailed | None:
        """Read back; None when the EHR holds what we sent."""
        assert self._receipt is not None
        try:
            verification = await workflow.execute_activity_method(
                EhrSteps.verify,
                EhrVerify(
                    tenant=self._command.tenant,
                    request_id=self._request_id("verify"),
                    receipt=self._receipt,
                    expected=self._expected(),
                ),
                task_queue=self._ehr_queue,
                start_to_close_timeout=self._ehr_timeout + timedelta(seconds=5),
                retry_policy=_READ_RETRY,
            )
        except ActivityError as err:
            return self._read_failed("verify", err)
        self._ehr_state = verification.stored
        self._differences = verification.differences
        if verification.matches:
            self._log("verify", 1, f"matches (version {verification.version})")
            self._status.version = verification.version or self._status.version
            return None
        if not verification.found:
            self._log("verify", 1, "not found")
            return StepFailed(ErrorClass.NOT_FOUND.value, "read-back did not find the resource")
        differing = ", ".join(verification.differences[:10])
        self._log("verify", 1, f"differs at {differing}")
        if dropped_extensions(verification.differences):
            return StepFailed(
                ErrorClass.SCHEMA_DRIFT.value,
                f"schema drift at {differing}: the EHR stored {self._status.resource} without "
                "these extensions (no longer accepted); a person must review the stored resource",
            )
        return StepFailed(ErrorClass.MISMATCH.value, f"read-back differs at {differing}")

    async def _check(self) -> None:
        """Read back, count the copies: end ``verified``, or wait for a person saying why."""
        failure = await self._confirmation_failure()
        if failure is None:
            detail = "read-back matches what was sent"
            if self._status.copies == 1:
                detail += "; the only copy the EHR's search shows"
            self._move(WriteState.VERIFIED, detail)
        elif (
            failure.error_class == ErrorClass.SCHEMA_DRIFT
            and not self._v2  # the resource is in the chart: rejected would say it is not
            and workflow.patched("schema-drift-rejects")
        ):
            self._fail(WriteState.REJECTED, failure)
        else:
            self._fail(WriteState.PENDING_CONFIRMATION, failure)

    async def _confirmation_failure(self) -> StepFailed | None:
        """None when read-back matches and, for a create, it is the only copy."""
        failure = await self._verification_failure()
        if failure is None and self._v2:
            failure = await self._copies_failure()
        return failure

    async def _copies_failure(self) -> StepFailed | None:
        """The one-copy check: once every unanswered attempt's quiet period has passed and the
        tenant's index can show our copy, a complete search must find exactly this copy.
        Extra copies are withdrawn where the tenant can (never deleted), else a person decides."""
        plan, receipt = self._plan, self._receipt
        if plan is None or plan.create is None or receipt is None or receipt.sent is not None:
            return None  # updates make no copy; a reading another source filed is not ours
        check_at = (self._acknowledged_at or workflow.now()) + self._search_lag
        if self._landing.until is not None:
            check_at = max(check_at, self._landing.until)
        if workflow.now() < check_at:
            self._status.transitions.append(
                Transition(
                    state=self._status.state,
                    at=workflow.now(),
                    detail=f"read-back matches; copies counted at {check_at:%H:%M:%S} UTC, "
                    "when the EHR's search can show every attempt",
                )
            )
            await workflow.sleep(check_at - workflow.now())
        withdrawn: set[str] = set()  # extra copies withdrawn here: their index may lag too
        for look in range(COPY_SEARCHES):
            try:
                copies = await self._copies(plan.create)
            except StepFailed as search_failed:
                return search_failed
            mine = receipt.reference
            live = [reference for reference in copies.references if reference not in withdrawn]
            others = [reference for reference in live if reference != mine]
            self._status.copies = len(live)
            if others:
                if failure := await self._withdraw_copies(mine, others):
                    return failure
                withdrawn.update(others)
                self._status.copies = len(live) - len(others)
                continue
            if mine in copies.references:
                return None
            if not self._landing.searchable:
                self._status.copies = None
                self._log("copies", look + 1, "search cannot show this type yet (held for review)")
                return None
            await workflow.sleep(max(self._search_lag, COPY_SEARCH_WAIT) * 2**look)
        return StepFailed(
            ErrorClass.NOT_FOUND.value,
            f"the EHR's search still does not show {receipt.reference} after {COPY_SEARCHES} "
            "searches (a read by id does): its copies cannot be counted yet",
        )

    async def _copies(self, request: CreateRequest) -> Copies:
        try:
            copies = await workflow.execute_activity_method(
                EhrSteps.copies,
                EhrCopies(
                    tenant=self._command.tenant,
                    request_id=self._request_id("copies"),
                    request=request,
                ),
                task_queue=self._ehr_queue,
                start_to_close_timeout=self._ehr_timeout * 4 + timedelta(seconds=5),
                retry_policy=_READ_RETRY,
            )
        except ActivityError as err:
            raise self._read_failed("copies", err) from None
        shown = ", ".join(copies.references[:10]) or "none"
        self._log("copies", 1, f"{len(copies.references)} live: {shown}")
        return copies

    def _duplicates(self, mine: str, others: list[str], why: str) -> StepFailed:
        return StepFailed(
            ErrorClass.DUPLICATE.value,
            f"the EHR holds {1 + len(others)} copies of this write: {mine} (this write's) and "
            f"{', '.join(others[:10])}; {why}: mark the others entered-in-error in the EHR, then "
            "resolve with reverify",
        )

    async def _withdraw_copies(self, mine: str, others: list[str]) -> StepFailed | None:
        """Withdraw extra copies clinically (entered-in-error, never DELETE), each only if it
        still holds what we wrote; None when all were withdrawn."""
        withdrawal = self._withdrawal
        if withdrawal is None:
            return self._duplicates(mine, others, "this tenant cannot withdraw them")
        assert self._plan is not None and self._plan.create is not None
        body = self._plan.create.body
        for reference in others:
            try:
                await workflow.execute_activity_method(
                    EhrSteps.withdraw,
                    EhrWithdraw(
                        tenant=self._command.tenant,
                        request_id=self._request_id("withdraw"),
                        target=reference,
                        withdrawal=withdrawal,
                        written={key: body.get(key) for key in withdrawal},
                    ),
                    task_queue=self._ehr_queue,
                    start_to_close_timeout=self._ehr_timeout * 3 + timedelta(seconds=5),
                    retry_policy=BUDGETS[self._command.urgency].policy(),
                )
            except ActivityError as err:
                failure = self._read_failed("withdraw", err)
                why = f"withdrawing {reference} failed ({failure.error_class}: {failure.reason})"
                return self._duplicates(mine, others, why)
            self._log("withdraw", 1, f"extra copy {reference}: {', '.join(sorted(withdrawal))} set")
        return None

    async def _look(self) -> WriteReceipt | None:
        """Search for what an unacknowledged create may have left: its receipt, or None when
        the EHR shows nothing. A search that fails raises StepFailed: it is not "nothing"."""
        assert self._plan is not None and self._plan.create is not None
        try:
            found = await workflow.execute_activity_method(
                EhrSteps.locate,
                EhrLocate(
                    tenant=self._command.tenant,
                    request_id=self._request_id("locate"),
                    request=self._plan.create,
                ),
                task_queue=self._ehr_queue,
                start_to_close_timeout=self._ehr_timeout * 4 + timedelta(seconds=5),
                retry_policy=_READ_RETRY,
            )
        except ActivityError as err:
            raise self._read_failed("locate", err) from None
        self._log("locate", 1, "nothing found" if found is None else f"found {found.reference}")
        return found

    async def _locate(self) -> bool:
        """Look for what an unacknowledged create may have left; acknowledge it if found (a
        failed search is logged and counts as not found: callers keep waiting)."""
        if self._plan is None or self._plan.create is None:
            return False
        try:
            found = await self._look()
        except StepFailed:
            return False
        if found is None:
            return False
        self._acknowledge(found, "found in the EHR")
        return True

    # --- waiting for a person -------------------------------------------------------------------

    async def _await_decisions(self) -> None:
        """Park while a person must decide; meanwhile re-check the EHR on a widening schedule
        (a write the EHR finally shows, or shows correctly, finishes by itself)."""
        while self._status.state.is_waiting_for_human:
            self._continue_as_new_if_long()
            automatic = self._status.state is WriteState.PENDING_CONFIRMATION
            delay = RECHECK_DELAYS[min(self._rechecks, len(RECHECK_DELAYS) - 1)]
            self._status.next_check_at = workflow.now() + delay if automatic else None
            try:
                async with self._decisions.next(delay if automatic else None) as resolution:
                    await self._apply(resolution)
            except TimeoutError:
                self._rechecks += 1
                await self._recheck()  # decisions are refused meanwhile (not waiting)
        # a decision accepted just before the write settled by itself is answered, not stranded
        self._decisions.refuse_pending(
            f"the write became '{self._status.state.value}' by itself before the decision could "
            "be applied; nothing was done"
        )

    def _continue_as_new_if_long(self) -> None:
        info = workflow.info()
        long = info.get_current_history_length() > CONTINUE_AS_NEW_AFTER_EVENTS
        if (long or info.is_continue_as_new_suggested()) and workflow.all_handlers_finished():
            if self._search_updates:
                workflow.upsert_search_attributes(self._search_updates)
                self._search_updates = []
            workflow.continue_as_new(self._carry())

    async def _reconcile(self) -> None:
        """The per-write re-check, some hours after ``verified``: still as we wrote it, or a
        mismatch a person must look at (deleted, entered in error, re-linked or edited)."""
        failure = await self._verification_failure()
        if failure is None:
            self._move(WriteState.RECONCILED, "re-read after the reconcile delay: still matches")
            return
        self._fail(WriteState.MISMATCH, StepFailed(failure.error_class, self._mismatch(failure)))

    def _mismatch(self, failure: StepFailed) -> str:
        if failure.error_class == ErrorClass.NOT_FOUND:
            return "the resource is gone from the EHR (deleted since it was verified)"
        stored = self._ehr_state or {}
        if stored and is_withdrawn(stored):
            return "the resource was marked entered-in-error in the EHR since it was verified"
        links = {"subject", "patient", "encounter", "context"} & {
            path.split(".")[0].split("[")[0]
            for path in failure.reason.split(" at ", 1)[-1].split(", ")
        }
        if links:
            return f"the resource was re-linked in the EHR ({', '.join(sorted(links))} changed)"
        return f"the resource was changed in the EHR since it was verified: {failure.reason}"

    async def _recheck(self) -> None:
        if self._receipt is None and not await self._locate():
            return
        failure = await self._confirmation_failure()
        if failure is None:
            self._move(WriteState.VERIFIED, "automatic re-check: read-back matches what was sent")
        elif self._status.state is not WriteState.PENDING_CONFIRMATION:
            self._fail(WriteState.PENDING_CONFIRMATION, failure)
        else:
            self._status.error_class, self._status.reason = failure.error_class, failure.reason

    async def _apply(self, resolution: Resolution) -> None:
        note = f"{resolution.action.value} by {resolution.by}: {resolution.reason}"
        if resolution.action is ResolutionAction.ABANDON:
            self._move(WriteState.ABANDONED, note)
            return
        if self._status.state is WriteState.MISMATCH:
            if resolution.action is ResolutionAction.CONFIRM:
                self._move(WriteState.RECONCILED, f"the EHR's version accepted: {note}")
            else:
                await self._reconcile()
            return
        self._status.transitions.append(
            Transition(state=self._status.state, at=workflow.now(), detail=note)
        )
        if resolution.action is ResolutionAction.RETRY and await self._create_is_in_ehr():
            self._log("retry", 0, f"{self._status.resource} is in the EHR: nothing re-sent")
        elif resolution.action in (ResolutionAction.RETRY, ResolutionAction.OVERRIDE):
            try:
                if self._plan is None:
                    await self._prepare()
                await self._send(override=resolution.action is ResolutionAction.OVERRIDE)
            except StepFailed as failure:
                await self._settle_send(failure)
                return
        elif resolution.reference:
            resource_type, resource_id = resolution.reference.split("/", 1)
            base = self._receipt or WriteReceipt(
                resource_type=resource_type,
                id=resource_id,
                version=None,
                created=False,
                status_code=0,
            )
            self._acknowledge(base.model_copy(update={"id": resource_id}), note)
        elif self._receipt is None and not await self._locate():
            self._fail(
                WriteState.PENDING_CONFIRMATION,
                StepFailed(ErrorClass.NOT_FOUND.value, "the EHR shows no resource for this write"),
            )
            return
        await self._check()

    async def _create_is_in_ehr(self) -> bool:
        """A retry of a create the EHR acknowledged: is that resource still there? Then sending
        it again would make a second copy whatever the dedup search says (a fingerprint search
        cannot match a copy the EHR stored differently): the retry reads back instead."""
        if not self._v2 or self._receipt is None or self._plan is None or not self._plan.create:
            return False
        failure = await self._verification_failure()
        if failure is not None and failure.error_class == ErrorClass.NOT_FOUND:
            self._receipt = None  # gone from the EHR: a new copy is what the person asks for
            return False
        return True
