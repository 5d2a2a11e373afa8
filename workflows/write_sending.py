"""Sending a write: the pure steps (validate, map, authorize), the identity crosswalk, and the
EHR attempts — paced by the workflow, each with a deadline, and after an unanswered create never
re-sent before a search made after the quiet period found nothing (workflows/landing.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutType
from temporalio.exceptions import TimeoutError as ActivityTimeout

from activities.command_steps import CommandSteps
from activities.crosswalk import Crosswalk, CrosswalkInput
from activities.deadline import CLOCK_SKEW
from activities.ehr_writes import EhrWrites
from activities.errors import (
    ErrorClass,
    full_jitter_delay,
)
from activities.models import (
    CommandInput,
    EhrUpdate,
    EhrWrite,
    ValidatedWrite,
    WriteReceipt,
)
from adapters.callers import Expected, expected, saga_of_step, write_binding
from adapters.fhir_r4 import DedupStrategy
from adapters.internal_refs import has_internal_refs
from adapters.policy import AuthorizationRecord
from workflows import search_attributes as sa
from workflows import write_metrics
from workflows.budgets import BUDGETS
from workflows.contract import (
    WriteState,
)
from workflows.kernel import ONE_ATTEMPT, READ_RETRY, StepFailed, failure_of, pure_step
from workflows.landing import LandingWindow
from workflows.write_checks import WriteChecks


class WriteSending(WriteChecks):
    async def _settle_send(self, failure: StepFailed) -> None:
        """A write that stopped after an unanswered attempt may be in the chart anyway (the EHR
        committed, then a later attempt was refused): look before calling it rejected, so a saga
        never leaves an orphan behind a step it believes failed. ``rejected`` promises nothing
        was written: after an unanswered create that takes searches until its quiet period has
        passed; a search that fails, or a type search cannot show, leaves the write waiting."""
        if failure.retryable or not self._record.maybe_landed:
            self._settle(failure)
        elif not self._v2:
            if await self._locate():
                await self._check()
            else:
                self._settle(failure)
        elif self._record.plan is None or self._record.plan.create is None:
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
            credential=command.credential,
            caller=self._caller(),
        )
        try:
            if self._current and not has_internal_refs(step.resource):
                authorization = await self._prepared_at_once(step)
            else:
                authorization = await self._prepared_in_steps(step)
        except (ActivityError, ApplicationError) as err:
            raise failure_of(err, ErrorClass.TRANSIENT) from None
        self._status.authorization = authorization
        if authorization.decision != "allow":
            raise StepFailed(ErrorClass.AUTHORIZATION.value, authorization.summary)
        self._move(
            WriteState.AUTHORIZED,
            f"{authorization.summary} for {authorization.requested_by}; "
            f"scopes {' '.join(authorization.scopes)}",
        )

    async def _prepared_at_once(self, step: CommandInput) -> AuthorizationRecord:
        """validate, map and authorize as one local activity (CommandSteps.prepare)."""
        prepared = await pure_step(CommandSteps.prepare, step)
        self._validated(prepared.validated)
        if prepared.refused is not None:
            raise StepFailed(prepared.refused.error_class, prepared.refused.reason)
        assert prepared.plan is not None and prepared.authorization is not None
        self._record.plan = prepared.plan
        return prepared.authorization

    async def _prepared_in_steps(self, step: CommandInput) -> AuthorizationRecord:
        """The three steps one by one: a resource with internal references is translated
        (the crosswalk, an EHR step) between validation and mapping; and histories from before
        CURRENT_SHAPE replay this way."""
        self._validated(await pure_step(CommandSteps.validate, step))
        if has_internal_refs(step.resource) and workflow.patched("identity-crosswalk"):
            step = await self._crosswalk(step)
        self._record.plan = await pure_step(CommandSteps.map, step)
        return await pure_step(CommandSteps.authorize, step)

    def _validated(self, validated: ValidatedWrite) -> None:
        self._status.vendor = validated.vendor
        self._status.resource_type = validated.resource_type
        self._record.ehr_timeout_seconds = validated.ehr_timeout_seconds
        self._record.search_lag_seconds = validated.search_lag_seconds
        self._record.reconcile_after_seconds = validated.reconcile_after_seconds
        self._record.landing = LandingWindow(
            quiet_seconds=validated.quiet_period_seconds,
            resend_after_quiet=validated.resend_after_quiet,
            searchable=validated.searchable,
        )
        self._record.withdrawal = validated.withdrawal
        self._search_updates.extend(
            [
                sa.VENDOR.value_set(validated.vendor),
                sa.RESOURCE_TYPE.value_set(validated.resource_type),
            ]
        )
        self._move(WriteState.VALIDATED)

    def _caller(self) -> Expected:
        """What the command's credential must prove (adapters/callers.py): bound to this
        workflow and the command as submitted (before the crosswalk changes its references),
        judged at the moment Temporal accepted it. A saga's step is proved by its saga's
        credential, when Temporal says that saga started it."""
        command, info = self._command, workflow.info()
        via = saga_of_step(command.tenant, command.idempotency_key, info.parent)
        return expected(write_binding(command), info.workflow_id, self._accepted_at(), via)

    async def _crosswalk(self, step: CommandInput) -> CommandInput:
        """Internal ids -> the tenant's ids (activities/crosswalk.py); a miss rejects the write."""
        result = await self._ehr(
            Crosswalk.resolve,
            CrosswalkInput(
                tenant=step.tenant,
                request_id=self._request_id("crosswalk"),
                resource=step.resource,
                requested_at=workflow.now(),
            ),
            self._record.ehr_timeout * 4 + timedelta(seconds=5),
            READ_RETRY,
        )
        return step.model_copy(update={"resource": result.resource})

    async def _send(self, override: bool = False) -> None:
        """Attempt the write until acknowledged, a failure retrying cannot fix, or the urgency's
        budget is spent (then StepFailed with a retryable class: a person takes over)."""
        assert self._record.plan is not None
        budget = BUDGETS[self._command.urgency]
        started = workflow.now()
        attempt = 0
        dedup = self._record.plan.create.dedup.value if self._record.plan.create else "if-match"
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
                several = failure.error_class == ErrorClass.DUPLICATE and self._v2
                if several and self._record.plan.create and (oldest := await self._oldest_copy()):
                    self._acknowledge(oldest, "several copies in the EHR: the oldest stands")
                    return
                if not failure.retryable:
                    raise
                delay = full_jitter_delay(attempt, failure.retry_after, workflow.random())
                if failure.error_class == ErrorClass.AMBIGUOUS:
                    self._record.maybe_landed = True
                    if self._v2 and self._record.plan.create:
                        self._record.landing.after_unanswered(self._sent_by(failure))
                    elif not self._v2:
                        delay = max(delay, self._record.search_lag)
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
                await self._sleep(delay)
                if self._v2:
                    self._status.next_check_at = None
                continue
            if not receipt.created:
                write_metrics.joined_existing(self._status)
            how = "created" if receipt.created else "already present"
            self._log("write", attempt, f"HTTP {receipt.status_code}: {how}")
            self._in_attempt = receipt.confirmation
            receipt = receipt.model_copy(update={"confirmation": None})
            self._acknowledge(receipt, f"{how} (HTTP {receipt.status_code})")
            return

    def _needs_search_before_resend(self) -> bool:
        """After an unanswered create, a tenant without conditional create (search-before-create,
        fingerprint) may hold a copy its search does not show yet: no blind re-send."""
        create = self._record.plan.create if self._record.plan else None
        return (
            self._v2
            and create is not None
            and create.dedup is not DedupStrategy.CONDITIONAL_CREATE
            and self._record.landing.needs_search()
        )

    def _can_confirm_in_attempt(self) -> bool:
        """Whether the attempt may read back and count copies as soon as the EHR acknowledges
        (Confirmation): only when the one-copy check would run at once anyway, i.e. the tenant's
        search shows a write without lag and no earlier attempt of this write went unanswered.
        Which steps a write runs depends on the attempt's answer, recorded in history, so
        histories from before this replay unchanged (their answers carry no confirmation)."""
        landing = self._record.landing
        return (
            self._v2
            and self._record.search_lag_seconds == 0
            and landing.until is None
            and landing.searchable
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
        landing = self._record.landing
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
            await self._sleep(wait)

    async def _attempt(self, override: bool) -> WriteReceipt:
        assert self._record.plan is not None
        # a read or search, maybe a vread, and a write, each bounded by the tenant's HTTP timeout
        timeout = self._record.ehr_timeout * 3 + timedelta(seconds=5)
        # no request of this attempt leaves the worker after send_by (activities/deadline.py):
        # time to be picked up from the task queue, then the activity's own timeout
        self._attempt_send_by = workflow.now() + 2 * timeout
        try:
            if self._record.plan.update:
                assert self._command.base_version is not None
                return await self._ehr(
                    EhrWrites.update,
                    EhrUpdate(
                        tenant=self._command.tenant,
                        request_id=self._request_id("update"),
                        request=self._record.plan.update,
                        base_version=self._command.base_version,
                        override=override,
                        send_by=self._attempt_send_by,
                    ),
                    timeout,
                    ONE_ATTEMPT,
                )
            assert self._record.plan.create is not None
            return await self._ehr(
                EhrWrites.write,
                EhrWrite(
                    tenant=self._command.tenant,
                    request_id=self._request_id("write"),
                    request=self._record.plan.create,
                    send_by=self._attempt_send_by,
                    confirm=self._can_confirm_in_attempt(),
                ),
                timeout,
                ONE_ATTEMPT,
            )
        except ActivityError as err:
            # no answer at all (the worker died, the call hung), or an exception nobody
            # classified: the EHR may have committed
            unclassified = ErrorClass.AMBIGUOUS if self._v2 else None
            failure = failure_of(err, ErrorClass.AMBIGUOUS, unclassified)
            if _timed_out(err) and workflow.patched("timeout-bounds-send"):
                # an attempt sends nothing after its start-to-close deadline, less the clock
                # skew (activities/deadline.py), and Temporal reports the timeout only after that
                # deadline: its requests were all sent by now (_sent_by adds the skew)
                failure.sent_at = workflow.now()
            raise failure from None


def _timed_out(err: ActivityError) -> bool:
    """The attempt ran out of its start-to-close time (e.g. its worker died mid-request)."""
    cause = err.cause
    return isinstance(cause, ActivityTimeout) and cause.type is TimeoutType.START_TO_CLOSE
