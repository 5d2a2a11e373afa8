"""The tamper-evident audit ledger: an append-only record of everything that changes a chart or a
write's fate (state transitions, EHR exchanges, withdrawals, a person's decisions), keyed-chained
per tenant.

Each record holds who (calling service, on-behalf-of user, or the person who decided), what
(resource type, reference, version, action), the policy decision, the outcome and the correlation
id (the workflow id), never clinical content or free text. Three layers, each stopping what the
one before cannot (README, Security, says who is trusted with what):

- the database refuses UPDATE, DELETE, TRUNCATE and any replacing INSERT, and heads only move
  forward (activities/audit_schema.py); on PostgreSQL the worker's role owns nothing and may only
  append (deploy/postgres/audit-roles.sql);
- every record is sealed with HMAC-SHA256 under a key held outside the database, chained to the
  one before (activities/audit_chain.py): someone who lifts the guards cannot recompute the chain;
- every ``checkpoint_every`` records the heads go to a checkpoint outside the database
  (activities/audit_anchor.py): records removed at the end, head and all, are caught.

``writeback audit verify`` lists the tenants from the records, the heads and the checkpoints
together (a deleted head does not hide its tenant) and checks each. SQLite by default, PostgreSQL
when the location is a ``postgresql://`` URL. Appends are idempotent per ``entry_key`` (a local
activity may run twice).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from temporalio import activity

from activities.audit_anchor import AnchorStore, Checkpoint
from activities.audit_chain import (
    GENESIS,
    LedgerKeys,
    LedgerRecord,
    Verification,
    expectations,
    keyed_hash,
    verify_chain,
)
from activities.audit_schema import (
    POSTGRES_MARKER,
    POSTGRES_SCHEMA,
    SQLITE_SCHEMA,
)
from activities.write_records import SCHEMA as RECORDS_SCHEMA
from activities.write_records import record_lines

__all__ = ["GENESIS", "AuditBatch", "AuditEvent", "AuditLedger", "AuditSteps", "LedgerRecord"]


class Notice(BaseModel, frozen=True):
    """On a transition that moved the state (not a note in the same state): what the webhooks
    beside the ledger tell (activities/webhook_events.py). Never stored in the ledger."""

    reason: str | None = None  # the status's reason, gated again before it leaves


class AuditEvent(BaseModel):
    """One line of the ledger. Codes, ids and references only: no resource content.

    ``decision``: a person's decision on a waiting workflow; ``requested_by`` is who decided,
    ``outcome`` the action (confirm, retry, abandon, …), ``state`` the state it was taken in,
    ``resource`` the reference the person gave (else the workflow's). ``withdrawal``: an extra
    copy or a saga step taken out of the chart; ``resource`` is what was withdrawn, ``outcome``
    ``withdrawn`` or ``failed``."""

    model_config = ConfigDict(frozen=True)

    entry_key: str  # unique per tenant: {workflow id}/t{n}, /x{n}, /d{n}, /w…
    tenant: str
    correlation_id: str
    kind: Literal["transition", "exchange", "decision", "withdrawal"]
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
    notice: Notice | None = None  # for the webhooks; left out of the record (its body)


class AuditBatch(BaseModel):
    events: list[AuditEvent]


class AuditLedger(ABC):
    """Append-only, keyed-chained per tenant. Thread-safe; blocking (call from a thread).

    ``read_only``: for ``audit verify``, which must change nothing in what it checks (no schema,
    no checkpoint, no declaration)."""

    placeholder = "?"
    #: Creates the tenant's head if it has none; then the head is read, locked where the
    #: database locks rows (SQLite's BEGIN IMMEDIATE already holds the whole database).
    create_head = (
        "INSERT INTO audit_heads (tenant, seq, hash) SELECT ?, 0, ? "
        "WHERE NOT EXISTS (SELECT 1 FROM audit_heads WHERE tenant = ?)"
    )
    lock_head = "SELECT seq, hash FROM audit_heads WHERE tenant = ?"
    _conn: Any

    def __init__(self, keys: LedgerKeys, anchors: AnchorStore, checkpoint_every: int) -> None:
        self._keys = keys
        self.anchors = anchors
        self._checkpoint_every = max(1, checkpoint_every)
        self._since_checkpoint = 0
        self._heads: dict[str, tuple[int, str]] = {}  # what this process appended last
        self._lock = threading.Lock()

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[Any]: ...

    def _lock_head(self, cursor: Any, tenant: str) -> tuple[int, str]:
        cursor.execute(self.q(self.create_head), (tenant, GENESIS, tenant))
        cursor.execute(self.q(self.lock_head), (tenant,))
        seq, digest = cursor.fetchone()
        return int(seq), str(digest)

    def q(self, sql: str) -> str:
        """``sql`` with this database's placeholder (the write records use it too)."""
        return sql.replace("?", self.placeholder)

    def append(self, events: list[AuditEvent]) -> int:
        """Append events not yet recorded (by entry key); returns how many were new."""
        added, key_id = 0, self._keys.current_id
        key = self._keys.get(key_id)
        assert key is not None
        heads: dict[str, tuple[int, str]] = {}
        with self.transaction() as cursor:
            for tenant in sorted({event.tenant for event in events}):
                seq, prev = self._lock_head(cursor, tenant)
                start = seq
                for event in (e for e in events if e.tenant == tenant):
                    cursor.execute(
                        self.q("SELECT 1 FROM audit_records WHERE tenant = ? AND entry_key = ?"),
                        (tenant, event.entry_key),
                    )
                    if cursor.fetchone():
                        continue
                    seq += 1
                    body = event.model_dump_json(exclude={"notice"})
                    digest = keyed_hash(key, tenant, seq, prev, body)
                    cursor.execute(
                        self.q(
                            "INSERT INTO audit_records "
                            "(tenant, seq, entry_key, body, prev_hash, hash, key_id) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)"
                        ),
                        (tenant, seq, event.entry_key, body, prev, digest, key_id),
                    )
                    prev = digest
                    added += 1
                    record_lines(cursor, self.q, [event])
                if seq != start:  # a head only moves forward
                    cursor.execute(
                        self.q("UPDATE audit_heads SET seq = ?, hash = ? WHERE tenant = ?"),
                        (seq, prev, tenant),
                    )
                    heads[tenant] = (seq, prev)
        self._after_append(heads, added)
        return added

    def _after_append(self, heads: dict[str, tuple[int, str]], added: int) -> None:
        """Every ``checkpoint_every`` records this process appended: a checkpoint."""
        with self._lock:
            self._heads.update(heads)
            self._since_checkpoint += added
            if self._since_checkpoint < self._checkpoint_every:
                return
            due, self._since_checkpoint = dict(self._heads), 0
        self.anchors.write(due)

    def checkpoint(self) -> Path:
        """A checkpoint of every tenant's head now, each head first checked against its chain
        (``writeback audit checkpoint``, on a schedule): a tampered chain is not anchored."""
        heads = {}
        for tenant in self.tenants():
            result = self.verify(tenant)
            if not result.ok:
                raise ValueError(f"tenant '{tenant}' does not verify: {result.problem}")
            head = self.head(tenant)
            if head is not None and head[0] > 0:
                heads[tenant] = head
        return self.anchors.write(heads)

    def declare_legacy(self) -> None:
        """Records from before the keyed chain (no key id) are declared once, by the first
        checkpoint this ledger ever gets; after that an unkeyed record is a forgery."""
        if self.anchors.latest() is not None:
            return
        with self.transaction() as cursor:
            cursor.execute(
                "SELECT tenant, MAX(seq) FROM audit_records WHERE key_id IS NULL GROUP BY tenant"
            )
            legacy = {str(tenant): int(seq) for tenant, seq in cursor.fetchall()}
        if legacy:
            heads = {tenant: self.head(tenant) for tenant in legacy}
            self.anchors.write({t: h for t, h in heads.items() if h is not None}, legacy)

    def tenants(self) -> list[str]:
        """Every tenant the records, the heads or the checkpoints name."""
        with self.transaction() as cursor:
            cursor.execute("SELECT tenant FROM audit_records UNION SELECT tenant FROM audit_heads")
            found = {str(row[0]) for row in cursor.fetchall()}
        for checkpoint in self.anchors.all():
            found.update(checkpoint.heads)
        return sorted(found)

    def records(self, tenant: str) -> list[LedgerRecord]:
        with self.transaction() as cursor:
            cursor.execute(
                self.q(
                    "SELECT tenant, seq, entry_key, body, prev_hash, hash, key_id "
                    "FROM audit_records WHERE tenant = ? ORDER BY seq"
                ),
                (tenant,),
            )
            return [LedgerRecord(*row) for row in cursor.fetchall()]

    def head(self, tenant: str) -> tuple[int, str] | None:
        with self.transaction() as cursor:
            cursor.execute(self.q("SELECT seq, hash FROM audit_heads WHERE tenant = ?"), (tenant,))
            row = cursor.fetchone()
            return (int(row[0]), str(row[1])) if row else None

    def verify(self, tenant: str, checkpoints: list[Checkpoint] | None = None) -> Verification:
        """The tenant's chain against its head and every checkpoint (CheckpointError: a
        checkpoint file the ledger did not write)."""
        checkpoints = self.anchors.all() if checkpoints is None else checkpoints
        legacy: dict[str, int] = {}
        for checkpoint in checkpoints:
            legacy.update(checkpoint.legacy_through)
        heads = [checkpoint.heads for checkpoint in checkpoints]
        known = expectations(self.head(tenant), heads, legacy, tenant)
        return verify_chain(tenant, self.records(tenant), self._keys, known)

    def close(self) -> None:
        self._conn.close()


class SqliteLedger(AuditLedger):
    def __init__(
        self,
        path: Path,
        keys: LedgerKeys,
        anchors: AnchorStore,
        checkpoint_every: int = 100,
        read_only: bool = False,
    ) -> None:
        super().__init__(keys, anchors, checkpoint_every)
        if read_only:
            uri = f"{path.resolve().as_uri()}?mode=ro"
            self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._conn.isolation_level = None
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._read_only = read_only
        if not read_only:
            self._conn.execute("PRAGMA journal_mode = wal")
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(audit_records)")}
            if columns and "key_id" not in columns:  # a ledger from before the keyed chain
                self._conn.execute("ALTER TABLE audit_records ADD COLUMN key_id TEXT")
            self._conn.executescript(SQLITE_SCHEMA + RECORDS_SCHEMA)
            self.declare_legacy()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Cursor]:
        with self._lock:
            cursor = self._conn.cursor()
            cursor.execute("BEGIN" if self._read_only else "BEGIN IMMEDIATE")  # one writer
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")


class SchemaMissing(Exception):
    """The PostgreSQL ledger's tables are not installed and this role may not install them."""


class PostgresLedger(AuditLedger):
    placeholder = "%s"
    create_head = AuditLedger.create_head + " ON CONFLICT (tenant) DO NOTHING"
    lock_head = "SELECT seq, hash FROM audit_heads WHERE tenant = ? FOR UPDATE"

    def __init__(
        self,
        url: str,
        keys: LedgerKeys,
        anchors: AnchorStore,
        checkpoint_every: int = 100,
        read_only: bool = False,
    ) -> None:
        import psycopg  # only when configured

        super().__init__(keys, anchors, checkpoint_every)
        self._conn = psycopg.connect(url, autocommit=True)
        if read_only:
            return
        if not self._installed():
            try:
                with self._conn.transaction():
                    # one schema creation at a time across workers
                    self._conn.execute("SELECT pg_advisory_xact_lock(7710501)")
                    self._conn.execute(POSTGRES_SCHEMA + RECORDS_SCHEMA)
            except psycopg.errors.InsufficientPrivilege:
                self._conn.close()
                raise SchemaMissing(
                    "the audit ledger's tables are not installed (or are out of date) and this "
                    "role may not install them: run 'writeback audit install' as their owner "
                    "(deploy/postgres/audit-roles.sql)"
                ) from None
        self.declare_legacy()

    def _installed(self) -> bool:
        row = self._conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgname = %s "
            "AND tgrelid = to_regclass('audit_heads') AND to_regclass('write_records') IS NOT NULL",
            (POSTGRES_MARKER,),
        ).fetchone()
        return bool(row and row[0])

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self._lock, self._conn.transaction(), self._conn.cursor() as cursor:
            yield cursor


def open_ledger(
    location: str,
    keys: LedgerKeys,
    anchors: AnchorStore,
    checkpoint_every: int = 100,
    read_only: bool = False,
) -> AuditLedger:
    """``postgresql://…`` (or ``postgres://``) opens PostgreSQL; anything else is a SQLite path."""
    if location.startswith(("postgresql://", "postgres://")):
        return PostgresLedger(location, keys, anchors, checkpoint_every, read_only)
    return SqliteLedger(Path(location), keys, anchors, checkpoint_every, read_only)


#: Told of every batch once the ledger holds it (the webhooks' hand-off); must be idempotent.
AfterRecord = Callable[[list[AuditEvent]], Awaitable[None]]


class AuditSteps:
    """The ledger as a (local) activity: the workflow hands over its new transitions and
    exchanges whenever it publishes its state; ``after`` hears of each batch once recorded."""

    def __init__(self, ledger: AuditLedger, after: AfterRecord | None = None) -> None:
        self._ledger = ledger
        self._after = after

    @activity.defn(name="record_audit")
    async def record(self, batch: AuditBatch) -> int:
        added = await asyncio.to_thread(self._ledger.append, batch.events)
        if self._after is not None:
            await self._after(batch.events)
        return added
