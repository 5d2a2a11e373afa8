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
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, SearchAttributeUpdate

from activities.errors import (
    ErrorClass,
)
from activities.models import Confirmation, WriteReceipt
from adapters.compensation import is_withdrawn
from workflows import search_attributes as sa
from workflows.audit_trail import AuditTrail
from workflows.contract import (
    Resolution,
    ResolutionAction,
    Transition,
    WriteCommand,
    WriteDetails,
    WriteState,
    WriteStatus,
)
from workflows.decisions import DecisionInbox
from workflows.kernel import StepFailed
from workflows.write_kernel import (
    CONTINUE_AS_NEW_AFTER_EVENTS,
    CURRENT_SHAPE,
    MISMATCH_ACTIONS,
    RECHECK_DELAYS,
    ContinuedWrite,
    WriteRecord,
)
from workflows.write_sending import WriteSending
from workflows.write_start import NO_ARGUMENT, Refused, open_write, unread_command

__all__ = ["CONTINUE_AS_NEW_AFTER_EVENTS", "ClinicalWrite", "ContinuedWrite"]


@workflow.defn(name="ClinicalWrite")
class ClinicalWrite(WriteSending):
    @workflow.init
    def __init__(self, start: RawValue = NO_ARGUMENT) -> None:
        # the argument arrives raw and is opened here: no input can fail the workflow task
        # (workflows/write_start.py); histories from before the limits replay without them
        # one marker for everything a write started today does; histories recorded before it
        # replay with the patches of their time (workflows/write_kernel.py CURRENT_SHAPE)
        self._current = workflow.patched(CURRENT_SHAPE)
        opened = open_write(
            start,
            ContinuedWrite,
            workflow.payload_converter(),
            limits=self._current or workflow.patched("input-limits"),
            continued_run=workflow.info().continued_run_id is not None,
        )
        self._refused = opened if isinstance(opened, Refused) else None
        self._continued = isinstance(opened, ContinuedWrite)
        if isinstance(opened, ContinuedWrite):
            self._record = opened  # the previous run's whole state
        else:
            command = opened if isinstance(opened, WriteCommand) else None
            command = command or unread_command(workflow.info().workflow_id)
            self._record = WriteRecord(
                command=command,
                status=WriteStatus(
                    workflow_id=workflow.info().workflow_id,
                    tenant=command.tenant,
                    interaction=command.interaction,
                    state=WriteState.REQUESTED,
                    transitions=[Transition(state=WriteState.REQUESTED, at=workflow.now())],
                ),
            )
        self._decisions = DecisionInbox(check=self._prove_decision)
        self._search_updates: list[SearchAttributeUpdate[Any]] = []
        self._audit = AuditTrail()
        self._v2 = False  # set by run(): histories recorded before it replay without it
        self._attempt_send_by: datetime | None = None
        self._in_attempt: Confirmation | None = None

    @workflow.query
    def details(self) -> WriteDetails:
        sent = None
        if self._record.receipt and self._record.receipt.sent:
            sent = self._record.receipt.sent
        elif self._record.plan and self._record.plan.create:
            sent = self._record.plan.create.body
        elif self._record.plan and self._record.plan.update:
            sent = self._record.plan.update.body
        return WriteDetails(
            status=self._status,
            command=None if self._refused else self._command,
            sent=sent,
            ehr_state=self._record.ehr_state,
        )

    def _refusal(self, resolution: Resolution) -> str | None:
        state = self._status.state
        if not self._decisions.waiting:
            return (
                "an automatic re-check of the EHR is running; send the decision again when it "
                "has finished (see next_check_at and the last transition)"
            )
        if resolution.action is ResolutionAction.OVERRIDE and state is not WriteState.CONFLICT:
            return "override is only for a write in conflict"
        if state is WriteState.MISMATCH and resolution.action not in MISMATCH_ACTIONS:
            allowed = ", ".join(action.value for action in MISMATCH_ACTIONS)
            return f"a reconciliation mismatch takes one of: {allowed}"
        expected = self._status.resource_type
        reference = resolution.reference
        if reference and expected and not reference.startswith(f"{expected}/"):
            return f"reference must be a {expected}"
        return None

    @workflow.run
    async def run(self, start: RawValue = NO_ARGUMENT) -> WriteStatus:
        if self._refused:  # not a command: nothing to write, nobody to wait for; on the record
            self._fail(WriteState.REJECTED, StepFailed(ErrorClass.VALIDATION, self._refused.reason))
            await self._audit.record(self._command, self._status)
            return self._status
        command = self._command
        # writes recorded before the ledger existed replay without it
        audited = self._current or workflow.patched("audit-ledger")
        self._v2 = self._current or workflow.patched("exactly-once-v2")
        recorder = asyncio.create_task(self._audit.run(command, self._status)) if audited else None
        if not self._continued:
            await self._write(command)
        await self._await_decisions()
        if (
            self._status.state is WriteState.VERIFIED
            and command.reconcile
            and self._record.reconcile_after
        ):
            await workflow.sleep(self._record.reconcile_after)
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

    async def _await_decisions(self) -> None:
        """Park while a person must decide; meanwhile re-check the EHR on a widening schedule
        (a write the EHR finally shows, or shows correctly, finishes by itself)."""
        while self._status.state.is_waiting_for_human:
            self._continue_as_new_if_long()
            automatic = self._status.state is WriteState.PENDING_CONFIRMATION
            delay = RECHECK_DELAYS[min(self._record.rechecks, len(RECHECK_DELAYS) - 1)]
            self._status.next_check_at = workflow.now() + delay if automatic else None
            try:
                async with self._decisions.next(delay if automatic else None) as resolution:
                    await self._audit_decision(resolution)
                    await self._apply(resolution)
            except TimeoutError:
                self._record.rechecks += 1
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
            workflow.continue_as_new(self._record)

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
        stored = self._record.ehr_state or {}
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
        if self._record.receipt is None and not await self._locate():
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
        self._note(note)
        if resolution.action is ResolutionAction.RETRY and await self._create_is_in_ehr():
            self._log("retry", 0, f"{self._status.resource} is in the EHR: nothing re-sent")
        elif resolution.action in (ResolutionAction.RETRY, ResolutionAction.OVERRIDE):
            try:
                if self._record.plan is None:
                    await self._prepare()
                await self._send(override=resolution.action is ResolutionAction.OVERRIDE)
            except StepFailed as failure:
                await self._settle_send(failure)
                return
        elif resolution.reference:
            resource_type, resource_id = resolution.reference.split("/", 1)
            base = self._record.receipt or WriteReceipt(
                resource_type=resource_type,
                id=resource_id,
                version=None,
                created=False,
                status_code=0,
            )
            self._acknowledge(base.model_copy(update={"id": resource_id}), note)
        elif self._record.receipt is None and not await self._locate():
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
        record = self._record
        if not self._v2 or record.receipt is None or record.plan is None or not record.plan.create:
            return False
        failure = await self._verification_failure()
        if failure is not None and failure.error_class == ErrorClass.NOT_FOUND:
            self._record.receipt = None  # gone from the EHR: a new copy is what the person asks for
            return False
        return True
