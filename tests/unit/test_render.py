"""The review queue as a person reads it (workers/render.py): one row per waiting write with its
reason, never more than the search attributes and the reason say."""

from __future__ import annotations

from datetime import UTC, datetime

from workers.client import WaitingWrite
from workers.render import waiting_table


def entry(n: int, reason: str | None) -> WaitingWrite:
    return WaitingWrite(
        workflow_id=f"wb:demo-epic:key-{n}",
        state="pending_confirmation",
        tenant="demo-epic",
        vendor="epic",
        error_class="duplicate",
        urgency="stat",
        waiting_since=datetime(2026, 11, 25, 8, n, tzinfo=UTC),
        reason=reason,
    )


def test_each_waiting_write_is_a_row_with_its_reason() -> None:
    text = waiting_table([entry(1, "the EHR holds 2 resources [x]"), entry(2, None)])
    lines = text.splitlines()
    assert "waiting since" in lines[0] and "workflow / reason" in lines[0]
    assert sum("wb:demo-epic:key-" in line for line in lines) == 2
    assert "the EHR holds 2 resources [x]" in text  # markup in a reason is shown, not parsed
    assert "2026-11-25 08:01:00" in text
    assert "\x1b[" not in text  # no colour codes when not on a terminal


def test_an_empty_queue_says_so() -> None:
    assert waiting_table([]) == "no writes are waiting for a person"
