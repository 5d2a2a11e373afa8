"""The saga's judgements without I/O (workflows/saga_withdrawal.py): which steps whose write named
no resource may still land in the EHR, and what a read-back after a person's 'confirm' shows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from activities.models import Verification
from workflows.contract import EhrExchange, WriteState, WriteStatus
from workflows.saga_contract import SagaStepStatus
from workflows.saga_withdrawal import judged_by_hand, may_land

NOW = datetime(2026, 11, 26, tzinfo=UTC)
UNANSWERED = "ambiguous: POST Task: ReadError after sending"
UNAVAILABLE = "transient: create Task: HTTP 503 [transient]"
REVOKED = {"status": "revoked"}


def write(state: WriteState, *outcomes: str, resource: str | None = None) -> WriteStatus:
    return WriteStatus(
        workflow_id="wb:t1:saga.k.task",
        tenant="t1",
        state=state,
        resource=resource,
        ehr_log=[
            EhrExchange(step="write", attempt=n, at=NOW, outcome=outcome)
            for n, outcome in enumerate(outcomes, 1)
        ],
    )


@pytest.mark.parametrize(
    ("status", "lands"),
    [
        (write(WriteState.ABANDONED, UNANSWERED, UNAVAILABLE), True),
        (write(WriteState.PENDING_CONFIRMATION, UNAVAILABLE), True),
        (write(WriteState.ABANDONED, UNAVAILABLE, UNAVAILABLE), False),  # every attempt answered
        (write(WriteState.REJECTED, UNANSWERED, "validation: HTTP 422"), False),  # it searched
        (write(WriteState.ABANDONED, UNANSWERED, resource="Task/1"), False),  # named: withdrawn
    ],
    ids=["unanswered-abandoned", "still-waiting", "answered", "rejected", "named"],
)
def test_which_steps_without_a_resource_may_still_land(status: WriteStatus, lands: bool) -> None:
    why = may_land("task", status)
    assert (why is not None) is lands
    if why:
        assert why.startswith("step 'task': ") and "may still land" in why


def step(resource_type: str = "ServiceRequest") -> SagaStepStatus:
    return SagaStepStatus(
        name="request",
        resource_type=resource_type,
        write_id="wb:t1:saga.k.request",
        resource=f"{resource_type}/1",
        compensable=True,
        compensation="failed",
    )


def read(found: bool = True, differences: list[str] | None = None, **stored: Any) -> Verification:
    return Verification(
        found=found,
        differences=differences or [],
        stored={"resourceType": "ServiceRequest", **stored} if stored else None,
    )


def test_a_confirm_is_believed_when_the_read_back_shows_the_withdrawn_form() -> None:
    out, detail = judged_by_hand(step(), REVOKED, read(), "confirm by op-7: done")
    assert out and detail.startswith("withdrawn by hand, read back: status revoked")


def test_any_withdrawn_form_set_by_hand_counts() -> None:
    shown = read(differences=["status"], status="entered-in-error")
    out, detail = judged_by_hand(step(), REVOKED, shown, "confirm by op-7: done")
    assert out and "status entered-in-error" in detail


def test_gone_counts_as_out_of_the_chart_and_says_gone() -> None:
    out, detail = judged_by_hand(step(), REVOKED, read(found=False), "confirm by op-7: deleted")
    assert out and detail.startswith("gone from the EHR")


def test_a_live_resource_is_not_believed_withdrawn() -> None:
    shown = read(differences=["status"], status="active")
    out, detail = judged_by_hand(step(), REVOKED, shown, "confirm by op-7: done")
    assert not out
    assert detail == "confirm by op-7: done, but the read-back shows it is not withdrawn " + (
        "(differs at status)"
    )


def test_a_type_without_a_withdrawn_form_is_out_only_when_gone() -> None:
    provenance = step("Provenance")
    out, detail = judged_by_hand(provenance, None, read(), "confirm by op-7: done")
    assert not out and "a Provenance has no withdrawn form" in detail
    assert judged_by_hand(provenance, None, read(found=False), "confirm")[0]
