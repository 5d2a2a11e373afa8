"""Taking one saga step out of the chart, and proving it by a read (ClinicalSaga's compensation).

Which steps: every step whose write named a resource, whatever state the write ended in, and
those whose write named none but may have reached the EHR all the same (``may_land``).

Three ways, each ending with what a read of the EHR showed, never with what was hoped:

- ``withdraw``: set the type's withdrawn form (entered-in-error, revoked, cancelled) through the
  tenant's API, then read it back;
- ``look_for``: a step whose write may have reached the EHR without us knowing where (an
  unanswered attempt, a write that ended abnormally) is searched for by its command identifier
  first; what is found is then withdrawn like any other step;
- ``read_back``: a person says they did it by hand (``confirm``): read each step and believe it
  only when the EHR agrees. Withdrawn by a person's hand counts whatever withdrawn form they chose
  (``adapters.compensation.is_withdrawn``: e.g. entered-in-error where we would have revoked).
  **Gone** (404/410 on read-back) counts as out of the chart too: compensation needs the resource
  not to be in the chart, and a deleted one is not; the step's detail says "gone", not withdrawn.
  A step that could never be found (its attempt may still land) is accepted on ``confirm`` only
  when a search for its identifier finds nothing either; should it land later, the reconciliation
  sweep reports it as an orphan (its write did not end in the chart).

Each method updates the step's status (``compensation``, ``detail``, and ``resource`` or
``version`` where a read names them) and raises nothing: a failed read or write leaves the step
``failed`` with the reason, for a person.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from activities.command_steps import CommandSteps
from activities.ehr_writes import EhrWrites
from activities.errors import ErrorClass
from activities.models import (
    CommandInput,
    EhrLocate,
    EhrVerify,
    EhrWithdraw,
    SagaPlan,
    Verification,
    WriteReceipt,
)
from adapters.compensation import is_withdrawn, withdrawal
from workflows.budgets import BUDGETS
from workflows.contract import ResolutionAction, Urgency, WriteCommand, WriteState, WriteStatus
from workflows.kernel import (
    READ_RETRY,
    SAGA_READ_TIMEOUT,
    SAGA_WITHDRAW_TIMEOUT,
    ehr_step,
    pure_step,
    reason_of,
)
from workflows.saga_contract import SagaStepStatus

#: Decisions a person may take on a saga whose withdrawal failed.
COMPENSATION_ACTIONS = frozenset(
    {
        ResolutionAction.RETRY,  # try the failed withdrawals again
        ResolutionAction.REVERIFY,  # read them again, look again for what may still land
        ResolutionAction.CONFIRM,  # "I withdrew them in the EHR by hand": read back first
        ResolutionAction.ABANDON,  # leave the chart as it is
    }
)
#: Compensation values meaning "not in the chart, as a read or a search showed".
OUT_OF_CHART = frozenset({"withdrawn", "withdrawn_by_hand", "not_found"})


def may_land(name: str, result: WriteStatus) -> str | None:
    """Why a step whose write named no resource may be in the EHR all the same (or land there
    later); None when it cannot: its write was refused (``rejected``: it searched before saying
    so), or none of its attempts went unanswered."""
    if result.resource is not None or result.state is WriteState.REJECTED:
        return None
    ambiguous = f"{ErrorClass.AMBIGUOUS.value}:"  # how ClinicalWrite logs an unanswered attempt
    if any(e.step == "write" and e.outcome.startswith(ambiguous) for e in result.ehr_log):
        return (
            f"step '{name}': its write ended {result.state.value} after an unanswered attempt, "
            "which may still land"
        )
    if result.state.is_waiting_for_human:
        return f"step '{name}': its write is {result.state.value}: what it sent may still land"
    return None


def by_hand_instruction(vendor: str, step: SagaStepStatus) -> str:
    return (
        f"{vendor} cannot withdraw a {step.resource_type} through its API: mark {step.resource} "
        "entered-in-error in the EHR by hand, then resolve this saga with 'confirm'"
    )


def _shown(elements: dict[str, Any]) -> str:
    """``status revoked``, ``verificationStatus entered-in-error``: element names and codes."""
    shown = []
    for key, value in sorted(elements.items()):
        codes = [c.get("code") for c in value.get("coding", [])] if isinstance(value, dict) else []
        shown.append(f"{key} {', '.join(map(str, codes)) if codes else value or 'removed'}")
    return "; ".join(shown)


def judged_by_hand(
    step: SagaStepStatus, expected: dict[str, Any] | None, verification: Verification, note: str
) -> tuple[bool, str]:
    """Whether a read-back shows a step out of the chart after a person's ``confirm``, and the
    detail to record (field names and codes only: no clinical content)."""
    if not verification.found:
        return True, f"gone from the EHR (read back: not found), so not in the chart; {note}"
    if expected is not None and verification.matches:
        return True, f"withdrawn by hand, read back: {_shown(expected)}; {note}"
    if expected is not None and verification.stored and is_withdrawn(verification.stored):
        return True, f"withdrawn by hand, read back: status entered-in-error; {note}"
    if expected is None:
        why = f"a {step.resource_type} has no withdrawn form: only its removal takes it out"
    else:
        why = "differs at " + ", ".join(verification.differences or ["(unknown)"])
    return False, f"{note}, but the read-back shows it is not withdrawn ({why})"


class StepWithdrawal:
    """The saga's EHR side of compensation, for one tenant and plan."""

    def __init__(self, tenant: str, plan: SagaPlan, request_id: Callable[[str, str], str]) -> None:
        self._tenant = tenant
        self._plan = plan
        self._request_id = request_id

    async def withdraw(
        self, step: SagaStepStatus, written: dict[str, Any], urgency: Urgency
    ) -> None:
        """Withdraw through the API and read back; ``written``: the step's resource as sent."""
        assert step.resource is not None
        if step.compensation in OUT_OF_CHART:
            return
        form = self._plan.withdrawal[step.name]
        if form is None:
            step.compensation = "not_possible"
            step.detail = by_hand_instruction(self._plan.vendor, step)
            return
        try:
            receipt = await ehr_step(
                EhrWrites.withdraw,
                EhrWithdraw(
                    tenant=self._tenant,
                    request_id=self._request_id(step.name, "withdraw"),
                    target=step.resource,
                    withdrawal=form,
                    written={key: written.get(key) for key in form},
                ),
                self._tenant,
                SAGA_WITHDRAW_TIMEOUT,
                BUDGETS[urgency].policy(),
            )
            verification = await self._verify(step, receipt, form)
        except ActivityError as err:
            error_class, reason = reason_of(err)
            step.compensation, step.detail = "failed", f"{error_class}: {reason}"
            return
        if not verification.matches:
            step.compensation = "failed"
            step.detail = "read-back after the withdrawal differs at " + ", ".join(
                verification.differences or ["(not found)"]
            )
            return
        step.compensation, step.version = "withdrawn", verification.version or receipt.version
        step.detail = f"withdrawn: {', '.join(sorted(form))} set (read back)"

    async def look_for(self, step: SagaStepStatus, command: WriteCommand, why: str) -> bool | None:
        """Search the EHR for a step's resource by its command identifier (the search its own
        write would make): True, with ``step.resource`` set, when found; False when the search
        finds nothing; None when it could not be made. Not found leaves the step ``failed``."""
        try:
            plan = await pure_step(
                CommandSteps.map,
                CommandInput(
                    tenant=self._tenant,
                    resource=command.resource,
                    command_identifier=command.command_identifier,
                    requested_by=command.requested_by,
                    on_behalf_of=command.on_behalf_of,
                    requested_at=workflow.now(),
                ),
            )
            assert plan.create is not None  # saga steps are creates
            found = await ehr_step(
                EhrWrites.locate,
                EhrLocate(
                    tenant=self._tenant,
                    request_id=self._request_id(step.name, "locate"),
                    request=plan.create,
                ),
                self._tenant,
                SAGA_READ_TIMEOUT,
                READ_RETRY,
            )
        except (ActivityError, ApplicationError) as err:
            error_class, reason = reason_of(err)
            step.compensation = "failed"
            step.detail = f"{why}; looking for it failed ({error_class}: {reason})"
            return None
        if found is None:
            step.compensation = "failed"
            step.detail = (
                f"{why}; not found in the EHR by its identifier: resolve with 'reverify' to look "
                "again, or 'confirm' once the chart shows it is not there"
            )
            return False
        step.resource, step.version = found.reference, found.version
        step.detail = f"found in the EHR by its identifier: {found.reference}"
        return True

    async def read_back(self, step: SagaStepStatus, note: str) -> None:
        """A person's ``confirm``: read the step; ``withdrawn_by_hand`` only if the EHR agrees.
        ``note`` (who decided) goes into the step's detail, and so into the saga's reason."""
        assert step.resource is not None
        expected = self._plan.withdrawal.get(step.name) or withdrawal(step.resource_type)
        resource_type, resource_id = step.resource.split("/", 1)
        receipt = WriteReceipt(
            resource_type=resource_type, id=resource_id, version=None, created=False, status_code=0
        )
        try:
            verification = await self._verify(
                step, receipt, expected or {"resourceType": resource_type}
            )
        except ActivityError as err:
            error_class, reason = reason_of(err)
            step.detail = f"{note}, but reading it back failed ({error_class}: {reason})"
            if step.compensation != "not_possible":
                step.compensation = "failed"
            return
        out, detail = judged_by_hand(step, expected, verification, note)
        if out:
            step.compensation, step.detail = "withdrawn_by_hand", detail
            step.version = verification.version or step.version
        elif step.compensation == "not_possible":
            step.detail = f"{detail}; {by_hand_instruction(self._plan.vendor, step)}"
        else:
            step.compensation, step.detail = "failed", detail

    async def _verify(
        self, step: SagaStepStatus, receipt: WriteReceipt, expected: dict[str, Any]
    ) -> Verification:
        return await ehr_step(
            EhrWrites.verify,
            EhrVerify(
                tenant=self._tenant,
                request_id=self._request_id(step.name, "verify"),
                receipt=receipt,
                expected=expected,
            ),
            self._tenant,
            SAGA_READ_TIMEOUT,
            READ_RETRY,
        )
