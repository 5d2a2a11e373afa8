"""The durable record of what we wrote, kept beside the audit ledger (activities/audit_ledger.py)
for as long as the tenant's ``reconcile.record_retention_days``: the reconciliation sweep compares
the EHR with it, never with Temporal's visibility, which forgets a write after the namespace's
retention.

It is derived from the ledger in the same transaction as the ledger lines it comes from, so the
two never disagree: a write's ``transition`` lines move its record (tenant, command identifier,
state, resource reference, version, when); a ``withdrawal`` line marks the resource as taken out
of the chart on purpose (a saga's compensation, a finding's remediation). Codes, ids and
references only, like the ledger. Three tables:

- ``write_records``: one row per write (the latest transition wins, by its number);
- ``withdrawn_resources``: resources we withdrew on purpose;
- ``sweep_marks``: per tenant, up to when the EHR's changes were all examined (the watermark),
  and when each write's resource was last seen by a sweep (``write_records.seen_at``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

#: Write states (workflows/contract.py) meaning "in the chart", and "nothing decided yet".
IN_CHART = frozenset({"verified", "reconciled"})
UNDECIDED = frozenset(
    {"requested", "validated", "authorized", "in_flight", "acknowledged", "pending_confirmation"}
)

#: A write's workflow id starts so (adapters/ids.py WRITE_PREFIX); sagas and findings do not.
_WRITE_ID_PREFIX = "wb:"

SCHEMA = """
CREATE TABLE IF NOT EXISTS write_records (
    tenant TEXT NOT NULL, command TEXT NOT NULL, seq INTEGER NOT NULL, state TEXT NOT NULL,
    resource TEXT, version TEXT, at TEXT NOT NULL, seen_at TEXT,
    PRIMARY KEY (tenant, command)
);
CREATE INDEX IF NOT EXISTS write_records_by_state ON write_records (tenant, state, at);
CREATE TABLE IF NOT EXISTS withdrawn_resources (
    tenant TEXT NOT NULL, resource TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (tenant, resource)
);
CREATE TABLE IF NOT EXISTS sweep_marks (
    tenant TEXT PRIMARY KEY, examined_until TEXT NOT NULL
);
"""

#: What the worker's PostgreSQL role may do with them (``writeback audit install``).
POSTGRES_GRANTS = """
GRANT SELECT, INSERT, UPDATE, DELETE ON write_records, withdrawn_resources, sweep_marks
TO {writer};
GRANT SELECT ON write_records, withdrawn_resources, sweep_marks TO {reader};
"""

_UPSERT_RECORD = (
    "INSERT INTO write_records (tenant, command, seq, state, resource, version, at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, command) DO UPDATE SET "
    "seq = excluded.seq, state = excluded.state, resource = excluded.resource, "
    "version = excluded.version, at = excluded.at WHERE excluded.seq > write_records.seq"
)
_SEEN = "UPDATE write_records SET seen_at = ? WHERE tenant = ? AND command = ?"
_INSERT_WITHDRAWN = (
    "INSERT INTO withdrawn_resources (tenant, resource, at) VALUES (?, ?, ?) "
    "ON CONFLICT (tenant, resource) DO NOTHING"
)


class LedgerLine(Protocol):
    """What the record reads of an audit ledger line (activities/audit_ledger.AuditEvent)."""

    @property
    def entry_key(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def correlation_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def at(self) -> datetime: ...
    @property
    def resource(self) -> str | None: ...
    @property
    def version(self) -> str | None: ...
    @property
    def state(self) -> str | None: ...
    @property
    def outcome(self) -> str: ...


def record_lines(cursor: Any, q: Callable[[str], str], lines: Iterable[LedgerLine]) -> None:
    """Move the records these new ledger lines speak of (inside the ledger's transaction)."""
    for line in lines:
        if line.kind == "withdrawal" and line.outcome == "withdrawn" and line.resource:
            cursor.execute(q(_INSERT_WITHDRAWN), (line.tenant, line.resource, _iso(line.at)))
            continue
        if line.kind != "transition" or not line.correlation_id.startswith(_WRITE_ID_PREFIX):
            continue
        number = line.entry_key.rpartition("/t")[2]
        if not number.isdigit() or line.state is None:
            continue
        command = line.correlation_id.removeprefix(_WRITE_ID_PREFIX)
        cursor.execute(
            q(_UPSERT_RECORD),
            (
                line.tenant,
                command,
                int(number),
                line.state,
                line.resource,
                line.version,
                _iso(line.at),
            ),
        )


@dataclass(frozen=True)
class WriteRecord:
    command: str
    state: str
    resource: str | None
    version: str | None
    at: datetime

    @property
    def in_chart(self) -> bool:
        return self.state in IN_CHART

    @property
    def undecided(self) -> bool:
        return self.state in UNDECIDED


class Database(Protocol):
    """The ledger's database (activities/audit_ledger.AuditLedger): a transaction (a cursor)
    and its SQL placeholder."""

    def transaction(self) -> Any: ...
    def q(self, sql: str) -> str: ...


class WriteRecords:
    """Reads and sweep bookkeeping on the records (blocking: call from a thread)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._db.transaction() as cursor:
            cursor.execute(self._db.q(sql), args)
            return list(cursor.fetchall())

    def _run(self, sql: str, args: tuple[Any, ...]) -> None:
        with self._db.transaction() as cursor:
            cursor.execute(self._db.q(sql), args)

    def of_commands(self, tenant: str, commands: Iterable[str]) -> dict[str, WriteRecord]:
        wanted = sorted(set(commands))
        found: dict[str, WriteRecord] = {}
        for start in range(0, len(wanted), 200):
            chunk = wanted[start : start + 200]
            marks = ", ".join("?" for _ in chunk)
            rows = self._rows(
                "SELECT command, state, resource, version, at FROM write_records "
                f"WHERE tenant = ? AND command IN ({marks})",
                (tenant, *chunk),
            )
            found |= {str(row[0]): _record(row) for row in rows}
        return found

    def unseen_in_chart(
        self, tenant: str, since: datetime, seen_since: datetime, after: str, limit: int
    ) -> list[WriteRecord]:
        """Writes in the chart, moved since ``since``, whose resource no scan saw since
        ``seen_since``: a page in command order after ``after``."""
        rows = self._rows(
            "SELECT command, state, resource, version, at FROM write_records "
            "WHERE tenant = ? AND state IN ('verified', 'reconciled') AND at >= ? "
            "AND (seen_at IS NULL OR seen_at < ?) AND command > ? ORDER BY command LIMIT ?",
            (tenant, _iso(since), _iso(seen_since), after, limit),
        )
        return [_record(row) for row in rows]

    def saw(self, tenant: str, commands: Iterable[str], at: datetime) -> None:
        rows = [(_iso(at), tenant, command) for command in sorted(set(commands))]
        with self._db.transaction() as cursor:
            cursor.executemany(self._db.q(_SEEN), rows)

    def withdrawn(self, tenant: str, references: Iterable[str]) -> set[str]:
        wanted = sorted(set(references))
        if not wanted:
            return set()
        marks = ", ".join("?" for _ in wanted)
        rows = self._rows(
            f"SELECT resource FROM withdrawn_resources WHERE tenant = ? AND resource IN ({marks})",
            (tenant, *wanted),
        )
        return {str(row[0]) for row in rows}

    def examined_until(self, tenant: str) -> datetime | None:
        rows = self._rows("SELECT examined_until FROM sweep_marks WHERE tenant = ?", (tenant,))
        return _time(rows[0][0]) if rows else None

    def mark_examined(self, tenant: str, until: datetime) -> None:
        """The watermark only moves forward."""
        self._run(
            "INSERT INTO sweep_marks (tenant, examined_until) VALUES (?, ?) "
            "ON CONFLICT (tenant) DO UPDATE SET examined_until = excluded.examined_until "
            "WHERE excluded.examined_until > sweep_marks.examined_until",
            (tenant, _iso(until)),
        )

    def forget_before(self, tenant: str, before: datetime) -> None:
        """Past the tenant's record retention: settled writes and withdrawals older than it."""
        with self._db.transaction() as cursor:
            for sql in (
                "DELETE FROM write_records WHERE tenant = ? AND at < ? "
                "AND state NOT IN ('requested', 'validated', 'authorized', 'in_flight', "
                "'acknowledged', 'pending_confirmation')",
                "DELETE FROM withdrawn_resources WHERE tenant = ? AND at < ?",
            ):
                cursor.execute(self._db.q(sql), (tenant, _iso(before)))


def _iso(at: datetime) -> str:
    """UTC, fixed width: the text order is the time order."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(row: tuple[Any, ...]) -> WriteRecord:
    command, state, resource, version, at = row
    return WriteRecord(
        command=str(command),
        state=str(state),
        resource=resource,
        version=version,
        at=_time(at),
    )


def _time(text: object) -> datetime:
    return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
