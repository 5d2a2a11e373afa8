"""ClinicalSaga: several resources written as one clinical unit, or withdrawn (saga_contract.py).

Each step is a child ClinicalWrite, so it has every guarantee of a single write: a step whose
answer was lost is found by its identifier before anything is re-sent, and a step that cannot be
decided waits for a person before the saga goes on. Later steps refer to earlier ones by the ids
the EHR assigned, read from the verified result.

When a step ends without being in the chart, the steps already written are withdrawn newest
first, each withdrawal read back. Full ACID across the EHR boundary is impossible; what the saga
promises instead is that it never ends believing something it has not read back: ``verified``
(all steps in the chart), ``compensated`` (the earlier steps withdrawn, verified), ``rejected``
(nothing was written), or ``compensation_failed``, waiting for a person with the whole context.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

from workflows import search_attributes as sa
from workflows import write_metrics
from workflows.budgets import BUDGETS
from workflows.contract import (
    Resolution,
    ResolutionAction,
    Transition,
    WriteCommand,
    WriteState,
    WriteStatus,
    workflow_id_for,
)
from workflows.decisions import DecisionInbox
from workflows.saga_contract import (
    SagaCommand,
    SagaStatus,
    SagaStep,
    SagaStepStatus,
    resolve_step_references,
)
from workflows.task_queues import ehr_task_queue

with workflow.unsafe.imports_passed_through():
    from activities.command_steps import CommandSteps
    from activities.ehr_steps import EhrSteps
    from activities.errors import NON_RETRYABLE_TYPES, ErrorClass
    from activities.models import (
        EhrVerify,
        EhrWithdraw,
        SagaPlan,
        SagaPlanInput,
        SagaStepInput,
    )
    from adapters.policy import AuthorizationRecord
    from adapters.provenance import with_authority

_PLAN_RETRY = RetryPolicy(maximum_attempts=3, non_retryable_error_types=NON_RETRYABLE_TYPES)
_READ_RETRY = RetryPolicy(
    maximum_attempts=6,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE_TYPES,
)
#: Decisions a person may take on a saga whose withdrawal failed.
_COMPENSATION_ACTIONS = frozenset(
    {
        ResolutionAction.RETRY,  # try the failed withdrawals again
        ResolutionAction.REVERIFY,  # read them again (someone may have withdrawn them by hand)
        ResolutionAction.CONFIRM,  # "I withdrew them in the EHR by hand"
        ResolutionAction.ABANDON,  # leave the chart as it is
    }
)


def _reason_of(err: BaseException) -> tuple[str, str]:
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type, cause.message
    return ErrorClass.TRANSIENT.value, f"no answer from the step ({type(cause).__name__})"


@workflow.defn(name="ClinicalSaga")
class ClinicalSaga:
    @workflow.init
    def __init__(self, command: SagaCommand) -> None:
        self._command = command
        self._status = SagaStatus(
            workflow_id=workflow.info().workflow_id,
            tenant=command.tenant,
            kind=command.kind,
            resource_type=f"saga:{command.kind}",
            state=WriteState.REQUESTED,
            transitions=[Transition(state=WriteState.REQUESTED, at=workflow.now())],
            steps=[
                SagaStepStatus(
                    name=step.name,
                    resource_type=step.resource_type,
                    write_id=workflow_id_for(command.tenant, command.step_key(step.name)),
                    compensable=False,
                )
                for step in command.steps
            ],
        )
        self._plan: SagaPlan | None = None
        self._written: list[str] = []  # steps in the chart, newest first: the compensation order
        self._authorizations: dict[str, AuthorizationRecord | None] = {}
        self._decisions = DecisionInbox()

    # --- what callers can ask and say -------------------------------------------------------

    @workflow.query
    def status(self) -> SagaStatus:
        return self._status

    @workflow.update
    async def resolve(self, resolution: Resolution) -> SagaStatus:
        """A person's decision on a failed withdrawal; returns once it has been acted on."""
        await self._decisions.deliver(resolution)
        return self._status

    @resolve.validator
    def _resolve_allowed(self, resolution: Resolution) -> None:
        if self._status.state is not WriteState.COMPENSATION_FAILED:
            raise ValueError(f"saga is '{self._status.state}', not waiting for a decision")
        if self._decisions.busy:
            raise ValueError("a decision is already being applied")
        if resolution.action not in _COMPENSATION_ACTIONS:
            allowed = ", ".join(sorted(action.value for action in _COMPENSATION_ACTIONS))
            raise ValueError(f"a failed compensation takes one of: {allowed}")

    # --- bookkeeping ----------------------------------------------------------------------------

    def _move(self, state: WriteState, detail: str | None = None) -> None:
        updates: list[SearchAttributeUpdate[Any]] = [sa.STATE.value_set(state.value)]
        if state.is_waiting_for_human:
            self._status.waiting_since = workflow.now()
            updates.append(sa.WAITING_SINCE.value_set(workflow.now()))
        else:
            self._status.waiting_since = None
        if self._status.error_class:
            updates.append(sa.ERROR_CLASS.value_set(self._status.error_class))
        self._status.state = state
        self._status.transitions.append(Transition(state=state, at=workflow.now(), detail=detail))
        workflow.upsert_search_attributes(updates)
        if state.is_settled:
            write_metrics.settled(self._status)

    def _step(self, name: str) -> SagaStepStatus:
        return next(step for step in self._status.steps if step.name == name)

    def _spec(self, name: str) -> SagaStep:
        return next(step for step in self._command.steps if step.name == name)

    @property
    def _ehr_queue(self) -> str:
        return ehr_task_queue(workflow.info().task_queue, self._command.tenant)

    def _request_id(self, step: str, what: str) -> str:
        return f"{workflow.info().workflow_id}/{step}/{what}/{len(self._status.transitions)}"

    # --- the saga -------------------------------------------------------------------------------

    @workflow.run
    async def run(self, command: SagaCommand) -> SagaStatus:
        workflow.upsert_search_attributes(
            [
                sa.STATE.value_set(WriteState.REQUESTED.value),
                sa.TENANT.value_set(command.tenant),
                sa.RESOURCE_TYPE.value_set(f"saga:{command.kind}"),
                sa.URGENCY.value_set(command.urgency.value),
            ]
        )
        try:
            self._plan = await workflow.execute_local_activity_method(
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
                ),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=_PLAN_RETRY,
            )
        except (ActivityError, ApplicationError) as err:
            self._status.error_class, self._status.reason = _reason_of(err)
            self._move(WriteState.REJECTED, self._status.reason)
            return self._status
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
            return self._status
        self._written = [
            name for name in reversed(self._plan.order) if self._is_in_chart(self._step(name))
        ]
        if not self._written:
            self._move(WriteState.REJECTED, f"step '{failed}' failed before anything was written")
            return self._status
        await self._compensate(failed)
        await self._await_decisions(failed)
        return self._status

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
            )
            step.state = WriteState.IN_FLIGHT
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
                return name
            step.state, step.resource, step.version = result.state, result.resource, result.version
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
        command = f"{self._command.tenant}:{self._command.step_key(about[0])}"
        return with_authority(resource, self._authorizations.get(about[0]), command)

    # --- compensation ---------------------------------------------------------------------------

    @staticmethod
    def _is_in_chart(step: SagaStepStatus) -> bool:
        return step.state is not None and step.state.is_in_chart

    async def _compensate(self, failed: str) -> None:
        """Withdraw the written steps newest first; settle ``compensated`` or wait for a person."""
        for name in self._written:
            await self._withdraw(name)
        undone = [self._step(name) for name in self._written]
        left = [step for step in undone if step.compensation not in _WITHDRAWN]
        if not left:
            self._move(
                WriteState.COMPENSATED,
                f"step '{failed}' failed; withdrawn: "
                + ", ".join(f"{step.resource}" for step in undone),
            )
            return
        self._status.error_class = ErrorClass.COMPENSATION.value
        self._status.reason = f"step '{failed}' failed and {len(left)} earlier step(s) could not "
        self._status.reason += "be withdrawn: " + "; ".join(
            f"{step.resource}: {step.detail}" for step in left
        )
        self._move(WriteState.COMPENSATION_FAILED, self._status.reason)

    async def _withdraw(self, name: str) -> None:
        step, spec = self._step(name), self._spec(name)
        assert self._plan is not None and step.resource is not None
        if step.compensation in _WITHDRAWN:
            return
        withdrawal = self._plan.withdrawal[name]
        if withdrawal is None:
            step.compensation = "not_possible"
            step.detail = (
                f"{self._plan.vendor} cannot withdraw a {step.resource_type} through its API: "
                f"mark {step.resource} entered-in-error in the EHR by hand, then resolve this "
                "saga with 'confirm'"
            )
            return
        try:
            receipt = await workflow.execute_activity_method(
                EhrSteps.withdraw,
                EhrWithdraw(
                    tenant=self._command.tenant,
                    request_id=self._request_id(name, "withdraw"),
                    target=step.resource,
                    withdrawal=withdrawal,
                    written={key: spec.resource.get(key) for key in withdrawal},
                ),
                task_queue=self._ehr_queue,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=BUDGETS[self._command.urgency].policy(),
            )
            verification = await workflow.execute_activity_method(
                EhrSteps.verify,
                EhrVerify(
                    tenant=self._command.tenant,
                    request_id=self._request_id(name, "verify"),
                    receipt=receipt,
                    expected=withdrawal,
                ),
                task_queue=self._ehr_queue,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=_READ_RETRY,
            )
        except ActivityError as err:
            error_class, reason = _reason_of(err)
            step.compensation, step.detail = "failed", f"{error_class}: {reason}"
            return
        if not verification.matches:
            step.compensation = "failed"
            step.detail = "read-back after the withdrawal differs at " + ", ".join(
                verification.differences or ["(not found)"]
            )
            return
        step.compensation, step.version = "withdrawn", verification.version or receipt.version
        step.detail = f"withdrawn: {', '.join(sorted(withdrawal))} set (read back)"

    async def _await_decisions(self, failed: str) -> None:
        while self._status.state is WriteState.COMPENSATION_FAILED:
            async with self._decisions.next() as resolution:
                await self._apply(resolution, failed)

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
        self._status.transitions.append(
            Transition(state=self._status.state, at=workflow.now(), detail=note)
        )
        for step in pending:
            if resolution.action is ResolutionAction.CONFIRM:
                step.compensation, step.detail = "withdrawn_by_hand", note
            else:  # retry or reverify: both read first, and leave a withdrawn resource alone
                step.compensation = None
        await self._compensate(failed)


_WITHDRAWN = frozenset({"withdrawn", "withdrawn_by_hand"})
