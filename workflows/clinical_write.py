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
from datetime import timedelta
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
from workflows.task_queues import ehr_task_queue
from workflows.write_start import NO_ARGUMENT, Refused, open_write, unread_command

with workflow.unsafe.imports_passed_through():
    from activities.command_steps import CommandSteps
    from activities.crosswalk import Crosswalk, CrosswalkInput
    from activities.ehr_steps import EhrSteps
    from activities.errors import NON_RETRYABLE_TYPES, RETRYABLE, ErrorClass, full_jitter_delay
    from activities.models import (
        CommandInput,
        EhrLocate,
        EhrUpdate,
        EhrVerify,
        EhrWrite,
        WritePlan,
        WriteReceipt,
    )
    from adapters.compensation import is_withdrawn
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


#: What a person may decide on a reconciliation mismatch: accept the EHR's version (confirm), read
#: again (reverify), or stop tracking the write (abandon).
_MISMATCH_ACTIONS = frozenset(
    {ResolutionAction.CONFIRM, ResolutionAction.REVERIFY, ResolutionAction.ABANDON}
)


class StepFailed(Exception):
    """A step failed; ``error_class`` and ``reason`` say why (no PHI)."""

    def __init__(self, error_class: str, reason: str, retry_after: timedelta | None = None) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.error_class in RETRYABLE


def _failure_of(err: ActivityError | ApplicationError, unanswered: ErrorClass) -> StepFailed:
    """Local activities fail with the ApplicationError itself, regular ones wrap it. A failure
    without an answer (the activity timed out, e.g. its worker died) is ``unanswered``."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type:
        seconds = cause.details[0] if cause.details else None
        retry_after = timedelta(seconds=seconds) if isinstance(seconds, int | float) else None
        return StepFailed(cause.type, cause.message, retry_after)
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
        if self._continued:
            self._resume(self._continued)

    def _resume(self, carried: ContinuedWrite) -> None:
        self._status, self._plan, self._receipt = carried.status, carried.plan, carried.receipt
        self._ehr_state, self._differences = carried.ehr_state, carried.differences
        self._ehr_timeout = timedelta(seconds=carried.ehr_timeout_seconds)
        self._search_lag = timedelta(seconds=carried.search_lag_seconds)
        self._reconcile_after = timedelta(seconds=carried.reconcile_after_seconds)
        self._maybe_landed, self._rechecks = carried.maybe_landed, carried.rechecks

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
        never leaves an orphan behind a step it believes failed."""
        if not failure.retryable and self._maybe_landed and await self._locate():
            await self._check()
        else:
            self._settle(failure)

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
                    # the next attempt starts with a search: give the EHR's index time to show
                    # what the lost attempt may have written
                    delay = max(delay, self._search_lag)
                spent = workflow.now() - started + delay
                if attempt >= budget.max_attempts or spent > budget.max_duration:
                    raise StepFailed(
                        failure.error_class,
                        f"retry budget ({self._command.urgency.value}) spent after {attempt} "
                        f"attempts; last: {failure.reason}",
                    ) from None
                write_metrics.retried(self._status, failure.error_class)
                await workflow.sleep(delay)
                continue
            if not receipt.created:
                write_metrics.joined_existing(self._status)
            how = "created" if receipt.created else "already present"
            self._log("write", attempt, f"HTTP {receipt.status_code}: {how}")
            self._acknowledge(receipt, f"{how} (HTTP {receipt.status_code})")
            return

    async def _attempt(self, override: bool) -> WriteReceipt:
        assert self._plan is not None
        # a read or search, maybe a vread, and a write, each bounded by the tenant's HTTP timeout
        timeout = self._ehr_timeout * 3 + timedelta(seconds=5)
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
                ),
                task_queue=self._ehr_queue,
                start_to_close_timeout=timeout,
                retry_policy=_ONE_ATTEMPT,
            )
        except ActivityError as err:
            # no answer at all (the worker died, the call hung): the EHR may have committed
            raise _failure_of(err, ErrorClass.AMBIGUOUS) from None

    def _acknowledge(self, receipt: WriteReceipt, detail: str) -> None:
        self._receipt = receipt
        self._status.resource = receipt.reference
        self._status.version = receipt.version
        self._move(WriteState.ACKNOWLEDGED, detail)

    def _read_failed(self, step: str, err: ActivityError) -> StepFailed:
        failure = _failure_of(err, ErrorClass.TRANSIENT)
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
        """Read back: end ``verified``, or wait for a person saying why."""
        failure = await self._verification_failure()
        if failure is None:
            self._move(WriteState.VERIFIED, "read-back matches what was sent")
        elif failure.error_class == ErrorClass.SCHEMA_DRIFT and workflow.patched(
            "schema-drift-rejects"
        ):
            self._fail(WriteState.REJECTED, failure)
        else:
            self._fail(WriteState.PENDING_CONFIRMATION, failure)

    async def _locate(self) -> bool:
        """Look for what an unacknowledged create may have left; acknowledge it if found."""
        if self._plan is None or self._plan.create is None:
            return False
        try:
            found = await workflow.execute_activity_method(
                EhrSteps.locate,
                EhrLocate(
                    tenant=self._command.tenant,
                    request_id=self._request_id("locate"),
                    request=self._plan.create,
                ),
                task_queue=self._ehr_queue,
                start_to_close_timeout=self._ehr_timeout + timedelta(seconds=5),
                retry_policy=_READ_RETRY,
            )
        except ActivityError as err:
            self._read_failed("locate", err)
            return False
        if found is None:
            self._log("locate", 1, "nothing found")
            return False
        self._log("locate", 1, f"found {found.reference}")
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
                await self._recheck()

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
        failure = await self._verification_failure()
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
        if resolution.action in (ResolutionAction.RETRY, ResolutionAction.OVERRIDE):
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
