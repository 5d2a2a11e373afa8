"""Which ledger lines become webhooks (activities/webhook_events.py over workflows/audit_trail.py):
moves into the states subscribers hear of, with why for the ones that wait or fail, and nothing
for notes in the same state, exchanges, or states in between."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from activities.webhook_events import webhook_event
from workers import samples
from workflows.audit_trail import audit_events
from workflows.contract import Transition, WriteCommand, WriteState, WriteStatus

T0 = datetime(2026, 11, 26, tzinfo=UTC)


def status_through(*states: WriteState, reason: str | None = None) -> WriteStatus:
    return WriteStatus(
        workflow_id="wb:demo-r4:k1",
        tenant="demo-r4",
        state=states[-1],
        resource="Observation/9",
        error_class="transient" if reason else None,
        reason=reason,
        transitions=[
            Transition(state=state, at=T0 + timedelta(seconds=n)) for n, state in enumerate(states)
        ],
    )


def webhooks_of(status: WriteStatus) -> list[tuple[str, dict[str, object]]]:
    command = WriteCommand(
        tenant="demo-r4", idempotency_key="k1", resource=samples.heart_rate("p", 70)
    )
    found = [webhook_event(line) for line in audit_events(command, status, 0, 0)]
    return [(name, event.model_dump(mode="json")) for name, event in filter(None, found)]


def test_a_write_parked_for_a_person_says_waiting_with_why_and_its_rechecks_say_nothing() -> None:
    status = status_through(
        WriteState.REQUESTED,
        WriteState.IN_FLIGHT,
        WriteState.PENDING_CONFIRMATION,
        WriteState.PENDING_CONFIRMATION,  # a re-check that found nothing new: a note
        WriteState.PENDING_CONFIRMATION,
        reason="HTTP 503 after 5 attempts \u00e9",
    )
    [(name, event)] = webhooks_of(status)
    assert name == "waiting"
    assert event["type"] == "write.waiting"
    data = event["data"]
    assert isinstance(data, dict)
    assert data["event_id"] == "wb:demo-r4:k1/t2"
    assert data["state"] == "pending_confirmation"
    assert data["error_class"] == "transient"
    assert data["reason"] == "HTTP 503 after 5 attempts ?"  # gated again: printable ASCII only


def test_a_verified_write_says_verified_without_a_reason_and_states_between_say_nothing() -> None:
    status = status_through(
        WriteState.REQUESTED,
        WriteState.VALIDATED,
        WriteState.AUTHORIZED,
        WriteState.IN_FLIGHT,
        WriteState.ACKNOWLEDGED,
        WriteState.VERIFIED,
        reason="an earlier attempt's reason",
    )
    [(name, event)] = webhooks_of(status)
    assert name == "verified"
    data = event["data"]
    assert isinstance(data, dict)
    assert data["resource"] == "Observation/9"
    assert data["reason"] is None and data["error_class"] is None


def test_a_write_that_leaves_waiting_and_returns_says_waiting_again() -> None:
    status = status_through(
        WriteState.IN_FLIGHT,
        WriteState.CONFLICT,
        WriteState.IN_FLIGHT,
        WriteState.CONFLICT,
        reason="HTTP 412",
    )
    assert [name for name, _ in webhooks_of(status)] == ["waiting", "waiting"]
