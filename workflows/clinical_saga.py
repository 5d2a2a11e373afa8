"""ClinicalSaga: several resources written as one clinical unit, or withdrawn (saga_contract.py).

Each step is a child ClinicalWrite, so it has every guarantee of a single write: a step whose
answer was lost is found by its identifier before anything is re-sent, and a step that cannot be
decided waits for a person before the saga goes on. Later steps refer to earlier ones by the ids
the EHR assigned, read from the verified result.

When a step ends without being in the chart, every step the EHR may hold is withdrawn newest
first, each withdrawal read back (saga_withdrawal.py): the verified ones, any whose write named a
resource although it did not verify (a read-back that differed, a write a person abandoned), and
any whose write went unanswered and named none (looked for by its identifier first: it may still
land). Full ACID across the EHR boundary is impossible; what the saga promises instead is that it
never ends believing something it has not read back: ``verified`` (all steps in the chart),
``compensated`` (every step the EHR may hold shown out of it by a read or a search),
``rejected`` (nothing was written), or ``compensation_failed``, waiting for a person with the
whole context. A person's ``confirm`` ("done by hand") is read back too.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

from activities.command_steps import CommandSteps
from activities.errors import ErrorClass
from activities.models import SagaPlan, SagaPlanInput, SagaStepInput
from adapters.callers import expected, saga_binding
from adapters.ids import command_identifier
from adapters.policy import AuthorizationRecord
from adapters.provenance import with_authority
from workflows import search_attributes as sa
from workflows import write_metrics
from workflows.audit_trail import SettledMoves, hand_over, withdrawal_event
from workflows.contract import (
    Resolution,
    ResolutionAction,
    WriteCommand,
    WriteState,
    WriteStatus,
)
from workflows.decisions import DecisionInbox
from workflows.kernel import pure_step, reason_of, request_id
from workflows.person_waits import PersonWaits
from workflows.saga_contract import (
    SagaCommand,
    SagaStatus,
    SagaStep,
    SagaStepStatus,
    resolve_step_references,
)
from workflows.saga_withdrawal import COMPENSATION_ACTIONS, OUT_OF_CHART, StepWithdrawal, may_land
from workflows.write_start import NO_ARGUMENT, Refused, open_saga, unread_saga

#: ``workflow.patched`` ids: sagas that passed these points on earlier code replay as they ran.
#: Compensation covers every step the EHR may hold, not only the verified ones.
WITHDRAWS_WHAT_THE_EHR_MAY_HOLD = "saga-withdraws-what-the-ehr-may-hold"
#: A person's ``confirm`` is read back before a step counts as withdrawn by hand.
CONFIRM_READS_BACK = "saga-confirm-reads-back"
#: The saga opens its argument within the input limits (before: Temporal decoded it).
OPENS = "saga-opens-its-argument"


@workflow.defn(name="ClinicalSaga")
class ClinicalSaga(PersonWaits[SagaStatus]):
    _noun = "saga"
    _wait_restarts = True

    @workflow.init
    def __init__(self, start: RawValue = NO_ARGUMENT) -> None:
        # opened here, as a write's is: no input can fail the workflow task (write_start.py)
        opened = open_saga(start, workflow.payload_converter(), limits=workflow.patched(OPENS))
        self._refused = opened if isinstance(opened, Refused) else None
        command = (
            opened if isinstance(opened, SagaCommand) else unread_saga(workflow.info().workflow_id)
        )
        self._command = command
        self._status = SagaStatus.requested(command, workflow.info().workflow_id, workflow.now())
        self._plan: SagaPlan | None = None
        #: steps the EHR may hold, newest first: the compensation order
        self._written: list[str] = []
        #: steps whose write may have reached the EHR without naming a resource: why
        self._uncertain: dict[str, str] = {}
        self._commands: dict[str, WriteCommand] = {}
        self._authorizations: dict[str, AuthorizationRecord | None] = {}
        self._decisions = DecisionInbox(check=self._prove_decision)
        self._settled = SettledMoves(command.requested_by)

    # --- what callers can ask and say -------------------------------------------------------

    # the handlers are PersonWaits'; these say that a saga's status comes with its steps (for
    # callers that name the handler by the method, the type of the answer)

    @workflow.query
    def status(self) -> SagaStatus:
        return self._status

    @workflow.update
    async def resolve(self, resolution: Resolution) -> SagaStatus:  # type: ignore[override]
        """A person's decision on a failed withdrawal; returns once it has been acted on."""
        await self._decisions.deliver(resolution)
        return self._status

    @resolve.validator
    def _saga_resolve_allowed(self, resolution: Resolution) -> None:
        self._resolve_allowed(resolution)

    def _awaits_decision(self, state: WriteState) -> bool:
        """A decision is accepted only while the saga waits for one, so it is acted on at once
        in the state it was validated for; never queued behind compensation."""
        return state is WriteState.COMPENSATION_FAILED

    def _refusal(self, resolution: Resolution) -> str | None:
        if not self._decisions.waiting:
            return "saga is busy, not waiting for a decision: send it again shortly"
        if resolution.action not in COMPENSATION_ACTIONS:
            allowed = ", ".join(sorted(action.value for action in COMPENSATION_ACTIONS))
            return f"a failed compensation takes one of: {allowed}"
        return None

    def _doing(self) -> str:
        if self._status.state is not WriteState.IN_FLIGHT:
            return ""
        if self._written:
            return ": it is withdrawing its steps, and waits for a decision only if it cannot"
        writing = [step for step in self._status.steps if step.state is WriteState.IN_FLIGHT]
        if writing:
            step = writing[0]
            return (
                f": step '{step.name}' is being written; a decision on it goes to {step.write_id}"
            )
        return ""

    # --- bookkeeping ----------------------------------------------------------------------------

    def _publish(self, state: WriteState, began_waiting: bool) -> None:
        updates: list[SearchAttributeUpdate[Any]] = [sa.STATE.value_set(state.value)]
        if state.is_waiting_for_human:
            updates.append(sa.WAITING_SINCE.value_set(workflow.now()))
        if self._status.error_class:
            updates.append(sa.ERROR_CLASS.value_set(self._status.error_class))
        workflow.upsert_search_attributes(updates)
        if state.is_settled:
            write_metrics.settled(self._status)
        self._settled.moved(self._status)

    def _step(self, name: str) -> SagaStepStatus:
        return next(step for step in self._status.steps if step.name == name)

    def _spec(self, name: str) -> SagaStep:
        return next(step for step in self._command.steps if step.name == name)

    def _request_id(self, step: str, what: str) -> str:
        return request_id(step, what, len(self._status.transitions))

    # --- the saga -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, start: RawValue = NO_ARGUMENT) -> SagaStatus:
        await self._saga()
        await self._settled.hand_over()
        # the update that settled the saga answers before the saga ends
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._status

    async def _saga(self) -> None:
        command = self._command
        if self._refused:  # not a saga: nothing to write, nobody to wait for
            self._status.error_class = ErrorClass.VALIDATION.value
            self._status.reason = self._refused.reason
            self._move(WriteState.REJECTED, self._refused.reason)
            return
        workflow.upsert_search_attributes(
            [
                sa.STATE.value_set(WriteState.REQUESTED.value),
                sa.TENANT.value_set(command.tenant),
                sa.RESOURCE_TYPE.value_set(f"saga:{command.kind}"),
                sa.URGENCY.value_set(command.urgency.value),
            ]
        )
        try:
            self._plan = await pure_step(
                CommandSteps.plan_saga,
                SagaPlanInput(
                    tenant=command.tenant,
                    steps=[
                        SagaStepInput(
                            name=step.name,
                            resource_type=step.resource_type,
                            depends_on=sorted(step.depends_on),
                            optional=step.optional,
                        )
                        for step in command.steps
                    ],
                    credential=command.credential,  # proved here, before any step starts
                    caller=expected(
                        saga_binding(command), workflow.info().workflow_id, self._accepted_at()
                    ),
                ),
            )
        except (ActivityError, ApplicationError) as err:
            self._status.error_class, self._status.reason = reason_of(err)
            self._move(WriteState.REJECTED, self._status.reason)
            return
        self._status.vendor = self._plan.vendor
        workflow.upsert_search_attributes([sa.VENDOR.value_set(self._plan.vendor)])
        for step in self._status.steps:
            if step.name in self._plan.skipped:
                step.detail = f"skipped: the tenant does not accept a {step.resource_type}"
            else:
                step.compensable = self._plan.withdrawal[step.name] is not None
        self._move(WriteState.IN_FLIGHT, "order: " + " → ".join(self._plan.order))

        failed = await self._write_steps(self._plan.order)
        if failed is None:
            self._move(WriteState.VERIFIED, "every step verified")
            return
        held = self._may_be_in_chart if workflow.patched(WITHDRAWS_WHAT_THE_EHR_MAY_HOLD) else None
        self._written = [
            name
            for name in reversed(self._plan.order)
            if (held or self._is_in_chart)(self._step(name))
        ]
        if not self._written:
            self._move(WriteState.REJECTED, f"step '{failed}' failed before anything was written")
            return
        await self._compensate(failed)
        await self._await_decisions(failed)

    async def _write_steps(self, order: list[str]) -> str | None:
        """Write the steps in order; the name of the first one that did not end in the chart."""
        assigned: dict[str, str] = {}
        for name in order:
            spec, step = self._spec(name), self._step(name)
            resource = resolve_step_references(spec.resource, assigned)
            if spec.resource_type == "Provenance":
                resource = self._with_authority(spec, resource)
            command = WriteCommand(
                tenant=self._command.tenant,
                idempotency_key=self._command.step_key(name),
                resource=resource,
                requested_by=self._command.requested_by,
                on_behalf_of=self._command.on_behalf_of,
                urgency=self._command.urgency,
                reconcile=False,
                credential=self._command.credential,  # proves the step: we are its parent
            )
            step.state = WriteState.IN_FLIGHT
            self._commands[name] = command
            try:
                result = await workflow.execute_child_workflow(
                    "ClinicalWrite",  # by name: ClinicalWrite takes its argument raw
                    command,
                    result_type=WriteStatus,
                    id=step.write_id,
                    parent_close_policy=ParentClosePolicy.ABANDON,
                )
            except ChildWorkflowError as err:
                step.state = None
                step.detail = f"the step's write ended abnormally ({type(err.cause).__name__})"
                self._status.error_class = ErrorClass.TRANSIENT.value
                self._status.reason = f"step '{name}': {step.detail}"
                self._uncertain[name] = (
                    f"step '{name}': its write ended abnormally ({type(err.cause).__name__}); "
                    "what it sent may be in the EHR, or may still land"
                )
                return name
            step.state, step.resource, step.version = result.state, result.resource, result.version
            if why := may_land(name, result):
                self._uncertain[name] = why
            if not result.state.is_in_chart:
                step.detail = result.reason
                self._status.error_class = result.error_class
                self._status.reason = f"step '{name}' ended {result.state.value}: {result.reason}"
                return name
            assert result.resource is not None
            assigned[name] = result.resource
            self._authorizations[name] = result.authorization
        return None

    def _with_authority(self, spec: SagaStep, resource: dict[str, Any]) -> dict[str, Any]:
        """A Provenance about an earlier step carries that write's authorization: the
        on-behalf-of user as agent, its command as entity, the policy that allowed it."""
        about = sorted(spec.depends_on)
        if not about:
            return resource
        command = command_identifier(self._command.tenant, self._command.step_key(about[0]))
        return with_authority(resource, self._authorizations.get(about[0]), command)

    # --- compensation ---------------------------------------------------------------------------

    @staticmethod
    def _is_in_chart(step: SagaStepStatus) -> bool:
        return step.state is not None and step.state.is_in_chart

    def _may_be_in_chart(self, step: SagaStepStatus) -> bool:
        """The EHR holds it (its write named a resource, whatever state the write ended in: a
        read-back that differed, a person who abandoned it), or it may (``_uncertain``)."""
        return step.resource is not None or step.name in self._uncertain

    @property
    def _withdrawal(self) -> StepWithdrawal:
        assert self._plan is not None
        return StepWithdrawal(self._command.tenant, self._plan, self._request_id)

    async def _compensate(self, failed: str) -> None:
        """Withdraw the steps the EHR may hold, newest first (a step that named no resource is
        looked for first); then settle."""
        for name in self._written:
            step = self._step(name)
            if step.compensation in OUT_OF_CHART:
                continue
            if step.resource is None and not await self._withdrawal.look_for(
                step, self._commands[name], self._uncertain[name]
            ):
                continue
            await self._withdrawal.withdraw(step, self._spec(name).resource, self._command.urgency)
            if step.compensation in ("withdrawn", "failed"):  # the EHR was asked to withdraw it
                await self._audit_withdrawal(step)
        self._settle(failed)

    async def _audit_withdrawal(self, step: SagaStepStatus) -> None:
        assert step.resource is not None and step.compensation is not None
        key = f"{step.name}.{len(self._status.transitions)}"  # a new round adds a transition
        event = withdrawal_event(
            self._status, key, self._command.requested_by, step.resource, step.compensation
        )
        await hand_over([event])

    def _settle(self, failed: str) -> None:
        """``compensated`` when every step the EHR may hold is out of the chart, as read back;
        else wait for a person (``compensation_failed``) with each step that is not."""
        undone = [self._step(name) for name in self._written]
        left = [step for step in undone if step.compensation not in OUT_OF_CHART]
        if not left:
            self._move(
                WriteState.COMPENSATED,
                f"step '{failed}' failed; withdrawn: "
                + ", ".join(
                    f"{step.resource or step.name + ' (not in the EHR)'}" for step in undone
                ),
            )
            return
        self._status.error_class = ErrorClass.COMPENSATION.value
        self._status.reason = f"step '{failed}' failed and {len(left)} earlier step(s) could not "
        self._status.reason += "be withdrawn: " + "; ".join(
            f"{step.resource}: {step.detail}" if step.resource else f"{step.detail}"
            for step in left
        )
        self._move(WriteState.COMPENSATION_FAILED, self._status.reason)

    async def _await_decisions(self, failed: str) -> None:
        while self._status.state is WriteState.COMPENSATION_FAILED:
            await self._settled.hand_over()  # waiting for a person: say so now
            async with self._decisions.next() as resolution:
                await self._audit_decision(resolution)
                await self._apply(resolution, failed)
        self._decisions.refuse_pending(f"not applied: the saga is {self._status.state.value}")

    async def _apply(self, resolution: Resolution, failed: str) -> None:
        note = f"{resolution.action.value} by {resolution.by}: {resolution.reason}"
        pending = [
            self._step(name)
            for name in self._written
            if self._step(name).compensation in ("failed", "not_possible")
        ]
        if resolution.action is ResolutionAction.ABANDON:
            self._move(WriteState.ABANDONED, f"left in the chart as they are: {note}")
            return
        self._note(note)
        if resolution.action is not ResolutionAction.CONFIRM:
            for step in pending:  # retry or reverify: both read first, look for what is missing
                step.compensation = None
            await self._compensate(failed)
            return
        reads_back = workflow.patched(CONFIRM_READS_BACK)
        who = f"{resolution.action.value} by {resolution.by}"  # the reason (free text) stays out
        for step in pending:
            if not reads_back:
                step.compensation, step.detail = "withdrawn_by_hand", note
                continue
            found = step.resource is not None or await self._withdrawal.look_for(
                step, self._commands[step.name], self._uncertain[step.name]
            )
            if found:
                await self._withdrawal.read_back(step, who)
            elif found is False:  # the person and a search of the EHR agree
                step.compensation = "not_found"
                step.detail = f"{who}; a search for its identifier finds nothing in the EHR"
        self._settle(failed)
