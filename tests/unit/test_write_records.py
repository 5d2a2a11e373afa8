"""The durable record of our writes (activities/write_records.py), moved by the audit ledger in
its own transaction: the latest transition wins whatever order lines arrive in, withdrawals are
remembered, the watermark only moves forward, and retention forgets only settled writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.audit_anchor import AnchorStore
from activities.audit_chain import LedgerKeys
from activities.audit_ledger import AuditEvent, SqliteLedger
from activities.write_records import WriteRecords

KEYS = LedgerKeys((b"k" * 32,))
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def ledger(tmp_path: Path) -> SqliteLedger:
    return SqliteLedger(tmp_path / "ledger.db", KEYS, AnchorStore(tmp_path / "anchors", KEYS))


def transition(key: str, n: int, state: str, resource: str | None = None) -> AuditEvent:
    return AuditEvent(
        entry_key=f"wb:t1:{key}/t{n}",
        tenant="t1",
        correlation_id=f"wb:t1:{key}",
        kind="transition",
        at=T0 + timedelta(minutes=n),
        requested_by="cli",
        resource=resource,
        version="1" if resource else None,
        state=state,
        outcome=state,
    )


def test_the_latest_transition_wins_in_whatever_order_the_lines_arrive(
    ledger: SqliteLedger,
) -> None:
    ledger.append([transition("k1", 0, "requested"), transition("k1", 4, "verified", "Obs/1")])
    ledger.append([transition("k1", 2, "in_flight")])  # a late hand-over of an older line
    (record,) = WriteRecords(ledger).of_commands("t1", ["t1:k1"]).values()
    assert (record.state, record.resource, record.version) == ("verified", "Obs/1", "1")
    assert record.in_chart and not record.undecided


def test_only_writes_are_recorded_and_withdrawals_are_remembered(ledger: SqliteLedger) -> None:
    saga_line = transition("s1", 0, "verified", "Obs/9").model_copy(
        update={"correlation_id": "wb-saga:t1:s1", "entry_key": "wb-saga:t1:s1/t0"}
    )
    withdrawn = transition("k2", 5, "verified", "Obs/2").model_copy(
        update={"kind": "withdrawal", "entry_key": "wb:t1:k2/w0", "outcome": "withdrawn"}
    )
    ledger.append([saga_line, withdrawn])
    records = WriteRecords(ledger)
    assert records.of_commands("t1", ["t1:s1", "t1:k2"]) == {}
    assert records.withdrawn("t1", ["Obs/2", "Obs/9"]) == {"Obs/2"}


def test_unseen_writes_in_the_chart_come_in_pages_and_seen_ones_do_not(
    ledger: SqliteLedger,
) -> None:
    ledger.append([transition(f"k{i}", 1, "verified", f"Obs/{i}") for i in range(5)])
    ledger.append([transition("k9", 1, "rejected")])
    records = WriteRecords(ledger)
    sweep_start = T0 + timedelta(hours=1)
    records.saw("t1", ["t1:k1", "t1:k3"], sweep_start)
    first = records.unseen_in_chart("t1", T0, sweep_start, "", 2)
    rest = records.unseen_in_chart("t1", T0, sweep_start, first[-1].command, 2)
    assert [r.command for r in first + rest] == ["t1:k0", "t1:k2", "t1:k4"]


def test_the_watermark_only_moves_forward(ledger: SqliteLedger) -> None:
    records = WriteRecords(ledger)
    assert records.examined_until("t1") is None
    records.mark_examined("t1", T0 + timedelta(hours=2))
    records.mark_examined("t1", T0)  # a slower sweep that started earlier ends later
    assert records.examined_until("t1") == T0 + timedelta(hours=2)


def test_retention_forgets_settled_writes_but_not_undecided_ones(ledger: SqliteLedger) -> None:
    ledger.append([transition("old", 1, "verified", "Obs/1"), transition("open", 1, "in_flight")])
    records = WriteRecords(ledger)
    records.forget_before("t1", T0 + timedelta(days=1))
    assert set(records.of_commands("t1", ["t1:old", "t1:open"])) == {"t1:open"}
