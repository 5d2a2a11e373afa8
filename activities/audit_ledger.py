"""The tamper-evident audit ledger: an append-only record of every state transition and EHR
exchange of every write, hash-chained per tenant.

Each record holds who (calling service, on-behalf-of user), what (resource type, reference,
version), the policy decision, the outcome and the correlation id (the workflow id), never
clinical content. Record ``n`` of a tenant stores ``hash = SHA-256(tenant, n, hash of n-1,
body)``; ``verify`` walks the chain and names the first record that was changed, removed or moved.
A per-tenant head (last sequence number and hash) catches removal at the end. Tables refuse
UPDATE and DELETE by trigger; whoever can drop the trigger can edit, which ``verify`` then shows.
Anchoring the head hashes outside the database (e.g. in a WORM store) is the next step.

SQLite by default, PostgreSQL when the location is a ``postgresql://`` URL. Appends are
idempotent per ``entry_key`` (a local activity may run twice).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from temporalio import activity

GENESIS = "0" * 64


class AuditEvent(BaseModel):
    """One line of the ledger. Codes, ids and references only: no resource content."""

    model_config = ConfigDict(frozen=True)

    entry_key: str  # unique per tenant: {workflow id}/t{n} or /x{n}
    tenant: str
    correlation_id: str
    kind: Literal["transition", "exchange"]
    at: datetime
    requested_by: str
    on_behalf_of: str | None = None
    resource_type: str | None = None
    resource: str | None = None
    version: str | None = None
    state: str | None = None
    step: str | None = None
    attempt: int | None = None
    outcome: str
    error_class: str | None = None
    policy: str | None = None  # e.g. "allow nursing-vitals@2026-11 scopes system/Observation.c"


class AuditBatch(BaseModel):
    events: list[AuditEvent]


@dataclass(frozen=True)
class LedgerRecord:
    tenant: str
    seq: int
    entry_key: str
    body: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Verification:
    tenant: str
    records: int
    first_bad: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad is None


def chain_hash(tenant: str, seq: int, prev_hash: str, body: str) -> str:
    return hashlib.sha256(f"{tenant}\n{seq}\n{prev_hash}\n{body}".encode()).hexdigest()


def verify_chain(
    tenant: str, records: list[LedgerRecord], head: tuple[int, str] | None
) -> Verification:
    """Walk records in sequence order; the first that is missing, out of place or altered."""
    prev, expected = GENESIS, 1
    for record in records:
        if record.seq != expected:
            return Verification(
                tenant, len(records), expected, f"record {expected} is missing (removed)"
            )
        if record.prev_hash != prev:
            return Verification(
                tenant,
                len(records),
                expected,
                f"record {expected} does not follow record {expected - 1} (moved or replaced)",
            )
        if chain_hash(tenant, record.seq, record.prev_hash, record.body) != record.hash:
            return Verification(
                tenant,
                len(records),
                expected,
                f"record {expected} does not match its hash (edited)",
            )
        prev, expected = record.hash, expected + 1
    if head is not None and (head[0] != expected - 1 or head[1] != prev):
        return Verification(
            tenant,
            len(records),
            expected,
            f"the ledger ends at record {expected - 1} but its head says {head[0]} "
            "(records removed at the end)",
        )
    return Verification(tenant, len(records))


class AuditLedger(ABC):
    """Append-only, hash-chained per tenant. Thread-safe; blocking (call from a thread)."""

    placeholder = "?"
    #: Creates the tenant's head if it has none; then the head is read, locked where the
    #: database locks rows (SQLite's BEGIN IMMEDIATE already holds the whole database).
    create_head = "INSERT OR IGNORE INTO audit_heads (tenant, seq, hash) VALUES (?, 0, ?)"
    lock_head = "SELECT seq, hash FROM audit_heads WHERE tenant = ?"
    _conn: Any

    @abstractmethod
    @contextmanager
    def _transaction(self) -> Iterator[Any]: ...

    def _lock_head(self, cursor: Any, tenant: str) -> tuple[int, str]:
        cursor.execute(self._q(self.create_head), (tenant, GENESIS))
        cursor.execute(self._q(self.lock_head), (tenant,))
        seq, digest = cursor.fetchone()
        return int(seq), str(digest)

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def append(self, events: list[AuditEvent]) -> int:
        """Append events not yet recorded (by entry key); returns how many were new."""
        added = 0
        with self._transaction() as cursor:
            for tenant in sorted({event.tenant for event in events}):
                seq, prev = self._lock_head(cursor, tenant)
                for event in (e for e in events if e.tenant == tenant):
                    cursor.execute(
                        self._q("SELECT 1 FROM audit_records WHERE tenant = ? AND entry_key = ?"),
                        (tenant, event.entry_key),
                    )
                    if cursor.fetchone():
                        continue
                    seq += 1
                    body = event.model_dump_json()
                    digest = chain_hash(tenant, seq, prev, body)
                    cursor.execute(
                        self._q(
                            "INSERT INTO audit_records "
                            "(tenant, seq, entry_key, body, prev_hash, hash) "
                            "VALUES (?, ?, ?, ?, ?, ?)"
                        ),
                        (tenant, seq, event.entry_key, body, prev, digest),
                    )
                    prev = digest
                    added += 1
                cursor.execute(
                    self._q("UPDATE audit_heads SET seq = ?, hash = ? WHERE tenant = ?"),
                    (seq, prev, tenant),
                )
        return added

    def tenants(self) -> list[str]:
        with self._transaction() as cursor:
            cursor.execute("SELECT tenant FROM audit_heads ORDER BY tenant")
            return [str(row[0]) for row in cursor.fetchall()]

    def records(self, tenant: str) -> list[LedgerRecord]:
        with self._transaction() as cursor:
            cursor.execute(
                self._q(
                    "SELECT tenant, seq, entry_key, body, prev_hash, hash FROM audit_records "
                    "WHERE tenant = ? ORDER BY seq"
                ),
                (tenant,),
            )
            return [LedgerRecord(*row) for row in cursor.fetchall()]

    def head(self, tenant: str) -> tuple[int, str] | None:
        with self._transaction() as cursor:
            cursor.execute(self._q("SELECT seq, hash FROM audit_heads WHERE tenant = ?"), (tenant,))
            row = cursor.fetchone()
            return (int(row[0]), str(row[1])) if row else None

    def verify(self, tenant: str) -> Verification:
        return verify_chain(tenant, self.records(tenant), self.head(tenant))

    def close(self) -> None:
        self._conn.close()


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    tenant TEXT NOT NULL, seq INTEGER NOT NULL, entry_key TEXT NOT NULL, body TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
    PRIMARY KEY (tenant, seq), UNIQUE (tenant, entry_key)
);
CREATE TABLE IF NOT EXISTS audit_heads (
    tenant TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, 'the audit ledger is append-only'); END;
"""


class SqliteLedger(AuditLedger):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute("PRAGMA journal_mode = wal")
        self._conn.executescript(_SQLITE_SCHEMA)
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cursor = self._conn.cursor()
            cursor.execute("BEGIN IMMEDIATE")  # one writer across processes too
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")


_POSTGRES_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_records (
    tenant TEXT NOT NULL, seq BIGINT NOT NULL, entry_key TEXT NOT NULL, body TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
    PRIMARY KEY (tenant, seq), UNIQUE (tenant, entry_key)
);
CREATE TABLE IF NOT EXISTS audit_heads (
    tenant TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit ledger is append-only'; END $$;
CREATE OR REPLACE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
"""


class PostgresLedger(AuditLedger):
    placeholder = "%s"
    create_head = (
        "INSERT INTO audit_heads (tenant, seq, hash) VALUES (?, 0, ?) "
        "ON CONFLICT (tenant) DO NOTHING"
    )
    lock_head = "SELECT seq, hash FROM audit_heads WHERE tenant = ? FOR UPDATE"

    def __init__(self, url: str) -> None:
        import psycopg  # only when configured

        self._conn = psycopg.connect(url, autocommit=True)
        with self._conn.transaction():
            # one schema creation at a time across workers
            self._conn.execute("SELECT pg_advisory_xact_lock(7710501)")
            self._conn.execute(_POSTGRES_SCHEMA)
        self._lock = threading.Lock()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock, self._conn.transaction(), self._conn.cursor() as cursor:
            yield cursor


def open_ledger(location: str) -> AuditLedger:
    """``postgresql://…`` (or ``postgres://``) opens PostgreSQL; anything else is a SQLite path."""
    if location.startswith(("postgresql://", "postgres://")):
        return PostgresLedger(location)
    return SqliteLedger(Path(location))


class AuditSteps:
    """The ledger as a (local) activity: the workflow hands over its new transitions and
    exchanges whenever it publishes its state."""

    def __init__(self, ledger: AuditLedger) -> None:
        self._ledger = ledger

    @activity.defn(name="record_audit")
    async def record(self, batch: AuditBatch) -> int:
        return await asyncio.to_thread(self._ledger.append, batch.events)
