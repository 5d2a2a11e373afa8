"""ClinicalWrite: one clinical write, validate -> map -> authorize -> write -> verify.

The workflow is the outbox: the command is durable the moment it starts. Each step's result is
recorded in history, so a worker crash resumes after the last completed step and never re-sends a
create that was acknowledged. What cannot be decided automatically waits for a person
(``resolve`` update) instead of failing silently.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import search_attributes as sa
from workflows.budgets import BUDGETS
from workflows.contract import (
    Resolution,
    ResolutionAction,
    Transition,
    WriteCommand,
    WriteState,
    WriteStatus,
)

with workflow.unsafe.imports_passed_through():
    from activities.command_steps import CommandSteps
    from activities.ehr_steps import EhrSteps
    from activities.errors import NON_RETRYABLE_TYPES, ErrorClass
    from activities.models import (
        CommandInput,
        EhrVerify,
        EhrWrite,
        Verification,
        WriteReceipt,
    )
    from adapters.fhir_r4 import CreateRequest

#: The pure steps retry only on infrastructure hiccups, never on a decided failure.
_PURE_STEP_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=NON_RETRYABLE_TYPES)
_PURE_STEP_TIMEOUT = timedelta(seconds=10)
_VERIFY_RETRY = RetryPolicy(
    maximum_attempts=10,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)


class StepFailed(Exception):
    """A step failed for good; ``error_class`` and ``reason`` say why (no PHI)."""

    def __init__(self, error_class: str, reason: str) -> None:
        super().__init__(reason)
        self.error_class = error_class
        self.reason = reason


def _failure_of(err: ActivityError | ApplicationError) -> StepFailed:
    """Local activities fail with the ApplicationError itself, regular ones wrap it."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type:
        return StepFailed(cause.type, cause.message)
    # Timeouts and other non-application failures: the budget ran out on infrastructure.
    return StepFailed(ErrorClass.TRANSIENT.value, f"{type(cause).__name__}: {cause}")


@workflow.defn(name="ClinicalWrite")
class ClinicalWrite:
    @workflow.init
    def __init__(self, command: WriteCommand) -> None:
        self._status = WriteStatus(
            workflow_id=workflow.info().workflow_id,
            tenant=command.tenant,
            state=WriteState.REQUESTED,
            transitions=[Transition(state=WriteState.REQUESTED, at=workflow.now())],
        )
        self._resolution: Resolution | None = None
        self._decisions_received = 0
        self._decisions_applied = 0
        self._ehr_timeout = timedelta(seconds=10)

    @workflow.query
    def status(self) -> WriteStatus:
        return self._status

    @workflow.update
    async def resolve(self, resolution: Resolution) -> WriteStatus:
        """A person's decision on a waiting write; returns the status once it has been acted on."""
        self._resolution = resolution
        self._decisions_received += 1
        mine = self._decisions_received
        await workflow.wait_condition(lambda: self._decisions_applied >= mine)
        return self._status

    @resolve.validator
    def _resolve_allowed(self, resolution: Resolution) -> None:
        if not self._status.state.is_waiting_for_human:
            raise ValueError(f"write is '{self._status.state}', not waiting for a decision")
        if self._decisions_received != self._decisions_applied:
            raise ValueError("a decision is already being applied")
        expected = self._status.resource_type
        if (
            resolution.reference
            and expected
            and not resolution.reference.startswith(f"{expected}/")
        ):
            raise ValueError(f"reference must be a {expected}")

    def _move(self, state: WriteState, detail: str | None = None) -> None:
        self._status.state = state
        self._status.transitions.append(Transition(state=state, at=workflow.now(), detail=detail))
        workflow.upsert_search_attributes([sa.STATE.value_set(state.value)])

    def _fail(self, state: WriteState, failure: StepFailed) -> None:
        self._status.error_class = failure.error_class
        self._status.reason = failure.reason
        workflow.upsert_search_attributes([sa.ERROR_CLASS.value_set(failure.error_class)])
        self._move(state, failure.reason)

    @workflow.run
    async def run(self, command: WriteCommand) -> WriteStatus:
        workflow.upsert_search_attributes(
            [sa.URGENCY.value_set(command.urgency.value), sa.STATE.value_set("requested")]
        )
        request: CreateRequest | None = None
        try:
            request = await self._prepare(command)
            receipt = await self._write(command, request)
        except StepFailed as failure:
            if failure.error_class in NON_RETRYABLE_TYPES:
                self._fail(WriteState.REJECTED, failure)
                return self._status
            # The retry budget ran out: a person decides whether to keep trying or give up.
            self._fail(WriteState.PENDING_CONFIRMATION, failure)
            await self._await_decision(command, request, receipt=None)
            return self._status
        await self._check(command, request, receipt)
        if self._status.state.is_waiting_for_human:
            await self._await_decision(command, request, receipt)
        return self._status

    async def _prepare(self, command: WriteCommand) -> CreateRequest:
        step = CommandInput(
            tenant=command.tenant,
            resource=command.resource,
            command_identifier=command.command_identifier,
            interaction=command.interaction,
            requested_by=command.requested_by,
            on_behalf_of=command.on_behalf_of,
        )
        try:
            validated = await workflow.execute_local_activity_method(
                CommandSteps.validate,
                step,
                start_to_close_timeout=_PURE_STEP_TIMEOUT,
                retry_policy=_PURE_STEP_RETRY,
            )
            self._status.vendor = validated.vendor
            self._status.resource_type = validated.resource_type
            workflow.upsert_search_attributes(
                [
                    sa.TENANT.value_set(command.tenant),
                    sa.VENDOR.value_set(validated.vendor),
                    sa.RESOURCE_TYPE.value_set(validated.resource_type),
                ]
            )
            self._move(WriteState.VALIDATED)
            request = await workflow.execute_local_activity_method(
                CommandSteps.map,
                step,
                start_to_close_timeout=_PURE_STEP_TIMEOUT,
                retry_policy=_PURE_STEP_RETRY,
            )
            authorization = await workflow.execute_local_activity_method(
                CommandSteps.authorize,
                step,
                start_to_close_timeout=_PURE_STEP_TIMEOUT,
                retry_policy=_PURE_STEP_RETRY,
            )
        except (ActivityError, ApplicationError) as err:
            raise _failure_of(err) from None
        self._move(
            WriteState.AUTHORIZED,
            f"by {authorization.requested_by}; scopes {' '.join(authorization.scopes)}",
        )
        self._ehr_timeout = timedelta(seconds=validated.ehr_timeout_seconds)
        return request

    async def _write(self, command: WriteCommand, request: CreateRequest) -> WriteReceipt:
        budget = BUDGETS[command.urgency]
        self._move(WriteState.IN_FLIGHT, f"dedup: {request.dedup.value}")
        try:
            receipt = await workflow.execute_activity_method(
                EhrSteps.write,
                EhrWrite(
                    tenant=command.tenant, request_id=self._request_id("write"), request=request
                ),
                # a search and a create, each bounded by the tenant's HTTP timeout
                start_to_close_timeout=self._ehr_timeout * 2 + timedelta(seconds=5),
                schedule_to_close_timeout=budget.max_duration,
                retry_policy=budget.policy(),
            )
        except (ActivityError, ApplicationError) as err:
            raise _failure_of(err) from None
        self._acknowledge(receipt)
        return receipt

    def _acknowledge(self, receipt: WriteReceipt) -> None:
        self._status.resource = receipt.reference
        self._status.version = receipt.version
        self._status.attempts = receipt.attempt
        how = "created" if receipt.created else "already present"
        self._move(WriteState.ACKNOWLEDGED, f"{how} (HTTP {receipt.status_code})")

    def _request_id(self, step: str) -> str:
        """PHI-free correlation id the EHR sees as X-Request-Id."""
        return f"{workflow.info().workflow_id}/{step}/{len(self._status.transitions)}"

    async def _read_back(
        self, command: WriteCommand, request: CreateRequest, receipt: WriteReceipt
    ) -> Verification:
        try:
            return await workflow.execute_activity_method(
                EhrSteps.verify,
                EhrVerify(
                    tenant=command.tenant,
                    request_id=self._request_id("verify"),
                    receipt=receipt,
                    sent=request,
                ),
                start_to_close_timeout=self._ehr_timeout + timedelta(seconds=5),
                retry_policy=_VERIFY_RETRY,
            )
        except (ActivityError, ApplicationError) as err:
            raise _failure_of(err) from None

    async def _check(
        self, command: WriteCommand, request: CreateRequest, receipt: WriteReceipt
    ) -> None:
        """Read back: end ``verified``, or move to ``pending_confirmation`` saying why."""
        try:
            verification = await self._read_back(command, request, receipt)
        except StepFailed as failure:
            self._fail(WriteState.PENDING_CONFIRMATION, failure)
            return
        if verification.matches:
            self._status.version = verification.version or self._status.version
            self._move(WriteState.VERIFIED, "read-back matches what was sent")
        elif not verification.found:
            self._fail(
                WriteState.PENDING_CONFIRMATION,
                StepFailed(ErrorClass.NOT_FOUND.value, "read-back did not find the resource"),
            )
        else:
            differing = ", ".join(verification.differences[:10])
            self._fail(
                WriteState.PENDING_CONFIRMATION,
                StepFailed(ErrorClass.MISMATCH.value, f"read-back differs at {differing}"),
            )

    async def _await_decision(
        self,
        command: WriteCommand,
        request: CreateRequest | None,
        receipt: WriteReceipt | None,
    ) -> None:
        """Park until a person resolves; apply each decision until the write is settled."""
        while self._status.state.is_waiting_for_human:
            await workflow.wait_condition(lambda: self._resolution is not None)
            resolution, self._resolution = self._resolution, None
            assert resolution is not None
            try:
                receipt = await self._apply(command, resolution, request, receipt)
            finally:
                self._decisions_applied += 1

    async def _apply(
        self,
        command: WriteCommand,
        resolution: Resolution,
        request: CreateRequest | None,
        receipt: WriteReceipt | None,
    ) -> WriteReceipt | None:
        """Carry out one decision; returns the receipt the next decision should start from."""
        note = f"{resolution.action.value} by {resolution.by}: {resolution.reason}"
        if resolution.action is ResolutionAction.ABANDON:
            self._move(WriteState.ABANDONED, note)
            return receipt
        self._status.transitions.append(
            Transition(state=self._status.state, at=workflow.now(), detail=note)
        )
        if receipt is None:
            # Nothing was acknowledged: confirm/reverify means "try the write again".
            try:
                request = request or await self._prepare(command)
                receipt = await self._write(command, request)
            except StepFailed as failure:
                self._fail(WriteState.PENDING_CONFIRMATION, failure)
                return None
        if resolution.reference:
            receipt = receipt.model_copy(update={"id": resolution.reference.split("/", 1)[1]})
            self._status.resource = resolution.reference
        assert request is not None
        await self._check(command, request, receipt)
        return receipt
