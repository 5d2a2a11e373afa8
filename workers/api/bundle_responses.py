"""The answer to a transaction or batch Bundle: a ``transaction-response`` Bundle of the saga's
status, a ``batch-response`` Bundle of the writes' statuses (workers/api/bundles.py made them).

One entry per step (per write), in the order of the Bundle's entries, with ``response.status``:

=========================================  ====================  ========  ==================
what became of the entry                   status                location  outcome
=========================================  ====================  ========  ==================
in the chart, as read back                 201 Created (an       yes       —
                                           update: 200 OK)
the step (the write) that failed           by its error class    if any    error: its state,
                                           (``_BY_ERROR_CLASS``)           error class, reason
withdrawn because another step failed      424 Failed Dependency yes       warning: withdrawn,
                                                                           after which step
written, and not withdrawn                 201 Created           yes       error: why not, the
                                                                           saga's state
not written because another step failed    424 Failed Dependency —         information: which
waiting for a person (a write)             202 Accepted          if any    warning: its state
not settled yet                            202 Accepted          —         information: its id
=========================================  ====================  ========  ==================

``location`` is ``Type/id/_history/version`` and ``etag`` ``W/"version"``, as FHIR's answer to a
create is. Outcomes say what happened with states, error classes, FHIR issue codes and the
write's reason (whose grammar admits paths and codes only: adapters/reasons.py), never a value of
the resources.
"""

from __future__ import annotations

from typing import Any, Literal

from activities.errors import ErrorClass
from adapters.tenants import Interaction
from workflows.contract import WriteState, WriteStatus
from workflows.saga_contract import SagaStatus, SagaStepStatus
from workflows.saga_withdrawal import OUT_OF_CHART

Severity = Literal["error", "warning", "information"]
#: The HTTP status and FHIR issue code of an entry that failed, by its error class.
_BY_ERROR_CLASS: dict[str, tuple[str, str]] = {
    ErrorClass.VALIDATION: ("422 Unprocessable Entity", "invalid"),
    ErrorClass.SCHEMA_DRIFT: ("422 Unprocessable Entity", "invalid"),
    ErrorClass.UNMAPPED: ("422 Unprocessable Entity", "not-found"),
    ErrorClass.EHR_REJECTED: ("422 Unprocessable Entity", "processing"),
    ErrorClass.UNSUPPORTED: ("422 Unprocessable Entity", "not-supported"),
    ErrorClass.AUTHORIZATION: ("403 Forbidden", "forbidden"),
    ErrorClass.NOT_FOUND: ("404 Not Found", "not-found"),
    ErrorClass.CONFLICT: ("409 Conflict", "conflict"),
    ErrorClass.DUPLICATE: ("409 Conflict", "duplicate"),
    ErrorClass.MISMATCH: ("409 Conflict", "conflict"),
    ErrorClass.TRANSPORT: ("503 Service Unavailable", "transient"),
    ErrorClass.TRANSIENT: ("503 Service Unavailable", "transient"),
    ErrorClass.AMBIGUOUS: ("504 Gateway Timeout", "timeout"),
}
#: A rejected entry whose error class is not known (a saga that could not withdraw its steps
#: reports that class, ``compensation``, instead of the failed step's).
_REJECTED = ("422 Unprocessable Entity", "processing")
#: An entry that failed for a reason the table does not name.
_UNCLASSIFIED = ("500 Internal Server Error", "exception")
#: What a step out of the chart again is, as its compensation says.
_OUT_OF_CHART = {
    "withdrawn": "was withdrawn (read back)",
    "withdrawn_by_hand": "was withdrawn by hand (read back)",
    "not_found": "is not in the EHR (a search for it finds nothing)",
}
_FAILED_DEPENDENCY = "424 Failed Dependency"
_ACCEPTED = "202 Accepted"


def transaction_response(status: SagaStatus) -> dict[str, Any]:
    """The ``transaction-response`` Bundle of a transaction's saga: entry ``i`` is step
    ``e{i}``."""
    failed = _failed_step(status)
    return _bundle(
        "transaction-response",
        [_step_response(status, index, step, failed) for index, step in enumerate(status.steps)],
    )


def batch_response(statuses: list[WriteStatus]) -> dict[str, Any]:
    """The ``batch-response`` Bundle of a batch's writes, in the order of its entries."""
    return _bundle(
        "batch-response", [_write_response(index, write) for index, write in enumerate(statuses)]
    )


# --- a transaction's steps ------------------------------------------------------------------------


def _failed_step(saga: SagaStatus) -> int | None:
    """The index of the step that ended out of the chart (or whose write ended abnormally, and
    so named no state); None when no step failed."""
    for index, step in enumerate(saga.steps):
        ended_out = step.state is not None and step.state.is_settled and not step.state.is_in_chart
        if ended_out or (step.state is None and step.detail is not None):
            return index
    return None


def _step_response(
    saga: SagaStatus, index: int, step: SagaStepStatus, failed: int | None
) -> dict[str, Any]:
    here = _entry(index)
    written = _written(step.resource, step.version)
    if index == failed:
        error_class = saga.error_class if saga.error_class != ErrorClass.COMPENSATION else None
        issues = [_failure(here, step.state, error_class, step.detail)]
        if step.compensation in OUT_OF_CHART:
            issues.append(_withdrawn(here, step, "after it failed"))
        return _response(_classified(error_class, step.state)[0], written, issues)
    if step.compensation in OUT_OF_CHART:
        after = f"after {_entry(failed)} failed" if failed is not None else "after a failure"
        return _response(_FAILED_DEPENDENCY, written, [_withdrawn(here, step, after)])
    if step.compensation is not None:  # failed, not_possible: still in the chart
        text = (
            f"{here} was written and is not withdrawn ({step.compensation}): {step.detail}; "
            f"the saga is {saga.state.value}"
        )
        return _response("201 Created", written, [_issue("error", "processing", text, here)])
    if step.state is not None and step.state.is_in_chart:
        return _response("201 Created", written, [])
    if not saga.state.is_settled:
        text = f"{here} is not written yet: the saga {saga.workflow_id} is {saga.state.value}"
        return _response(_ACCEPTED, {}, [_issue("information", "informational", text, here)])
    return _not_written(saga, here, failed)


def _not_written(saga: SagaStatus, here: str, failed: int | None) -> dict[str, Any]:
    if failed is not None:
        text = f"{here} was not written: {_entry(failed)} failed first"
        return _response(
            _FAILED_DEPENDENCY, {}, [_issue("information", "informational", text, here)]
        )
    # the saga stopped before any step (its plan: the caller's proof, the tenant's profile)
    http_status, _ = _classified(saga.error_class, saga.state)
    return _response(http_status, {}, [_failure(here, saga.state, saga.error_class, saga.reason)])


def _withdrawn(here: str, step: SagaStepStatus, after: str) -> dict[str, Any]:
    how = _OUT_OF_CHART[step.compensation or ""]
    return _issue("warning", "processing", f"{here} {how} {after}", here)


# --- a batch's writes --------------------------------------------------------------------------


def _write_response(index: int, write: WriteStatus) -> dict[str, Any]:
    here = _entry(index)
    written = _written(write.resource, write.version)
    if write.state.is_in_chart:
        created = write.interaction is Interaction.CREATE
        return _response("201 Created" if created else "200 OK", written, [])
    if write.state.is_waiting_for_human:
        text = (
            f"{here} waits for a person: its write {write.workflow_id} is {write.state.value}"
            + (f" ({write.error_class})" if write.error_class else "")
            + (f": {write.reason}" if write.reason else "")
        )
        return _response(_ACCEPTED, written, [_issue("warning", "incomplete", text, here)])
    if not write.state.is_terminal:
        text = f"{here} is not written yet: its write {write.workflow_id} is {write.state.value}"
        return _response(_ACCEPTED, {}, [_issue("information", "informational", text, here)])
    http_status, _ = _classified(write.error_class, write.state)
    failure = _failure(here, write.state, write.error_class, write.reason)
    return _response(http_status, written, [failure])


# --- the pieces ----------------------------------------------------------------------------------


def _entry(index: int) -> str:
    return f"Bundle.entry[{index}]"


def _classified(error_class: str | None, state: WriteState | None) -> tuple[str, str]:
    """The HTTP status and FHIR issue code of a failed entry."""
    if error_class in _BY_ERROR_CLASS:
        return _BY_ERROR_CLASS[error_class]
    return _REJECTED if state is WriteState.REJECTED else _UNCLASSIFIED


def _written(resource: str | None, version: str | None) -> dict[str, str]:
    """``location`` and ``etag`` of a resource the EHR holds; nothing for none."""
    if resource is None:
        return {}
    if version is None:
        return {"location": resource}
    return {"location": f"{resource}/_history/{version}", "etag": f'W/"{version}"'}


def _failure(
    here: str, state: WriteState | None, error_class: str | None, reason: str | None
) -> dict[str, Any]:
    _, code = _classified(error_class, state)
    ended = f"ended {state.value}" if state is not None else "ended abnormally"
    text = f"{here} failed: its write {ended}"
    text += f" (error class {error_class})" if error_class else ""
    text += f": {reason}" if reason else ""
    return _issue("error", code, text, here)


def _issue(severity: Severity, code: str, text: str, expression: str) -> dict[str, Any]:
    return {"severity": severity, "code": code, "diagnostics": text, "expression": [expression]}


def _response(status: str, written: dict[str, str], issues: list[dict[str, Any]]) -> dict[str, Any]:
    response: dict[str, Any] = {"status": status, **written}
    if issues:
        response["outcome"] = {"resourceType": "OperationOutcome", "issue": issues}
    return {"response": response}


def _bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}
