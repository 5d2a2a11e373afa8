"""SQLite persistence for the sandbox EHR.

Schema (read directly by independent test audits, keep it stable)::

    resource_versions(
        tenant       TEXT,     -- the /fhir/{tenant} segment
        type         TEXT,     -- resourceType, e.g. 'Observation'
        id           TEXT,     -- server-assigned, 12 lowercase hex chars
        version      INTEGER,  -- 1, 2, ... (meta.versionId is its string form)
        last_updated TEXT,     -- ISO 8601 UTC ending in 'Z' (= meta.lastUpdated)
        deleted      INTEGER,  -- 1 for a deletion tombstone, else 0
        body         TEXT,     -- the stored resource JSON, id/meta set by the server
        PRIMARY KEY (tenant, type, id, version))

    resource_tokens(
        tenant TEXT, type TEXT, id TEXT,
        param  TEXT,   -- 'identifier', 'patient', 'subject', 'encounter', 'code',
                       -- 'category' or '_tag'
        system TEXT,   -- identifier/coding system ('' when absent); '' for references
        value  TEXT)   -- identifier value or code; 'Type/id' for references

    resource_current(
        tenant, type, id, version, last_updated, deleted,
        indexed_at REAL)  -- epoch seconds from which search sees this version;
                          -- NULL: held back until reviewed (Epic's holding tank)

``resource_tokens`` holds the searchable tokens of the *current* version of
each non-deleted resource, written in the same transaction as the version, so
an audit of the file always sees what is stored. Delayed indexing is a query-time
rule on ``resource_current.indexed_at``, never a withheld token row.

One connection is shared and guarded by a lock; every write runs in a
``BEGIN IMMEDIATE`` transaction (:meth:`Store.tx`), so a conditional create
(search + insert) or a whole FHIR transaction bundle is atomic.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS resource_versions (
    tenant TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
    last_updated TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL,
    PRIMARY KEY (tenant, type, id, version));
CREATE TABLE IF NOT EXISTS resource_tokens (
    tenant TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
    param TEXT NOT NULL, system TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS resource_tokens_lookup
    ON resource_tokens (tenant, type, param, value);
CREATE INDEX IF NOT EXISTS resource_tokens_owner ON resource_tokens (tenant, type, id);
"""

CURRENT_SCHEMA = """
CREATE TABLE resource_current (
    tenant TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
    last_updated TEXT NOT NULL, deleted INTEGER NOT NULL, indexed_at REAL,
    PRIMARY KEY (tenant, type, id));
CREATE INDEX resource_current_order ON resource_current (tenant, type, last_updated, id);
INSERT INTO resource_current
    SELECT tenant, type, id, version, last_updated, deleted, 0 FROM resource_versions v
    WHERE version = (SELECT MAX(m.version) FROM resource_versions m
                     WHERE m.tenant = v.tenant AND m.type = v.type AND m.id = v.id);
"""

Json = dict[str, Any]
Token = tuple[str, str, str]


@dataclass(frozen=True)
class TokenMatch:
    """One alternative of a token/reference criterion (``None`` = any)."""

    system: str | None
    value: str | None
    id_only: bool = False
    """References given as a bare id: match ``value`` against the part after 'Type/'."""


@dataclass(frozen=True)
class TokenClause:
    """``param`` matches any of ``alternatives`` (comma-separated values are OR-ed)."""

    param: str
    alternatives: tuple[TokenMatch, ...]


@dataclass(frozen=True)
class Query:
    """AND-ed search criteria plus paging, built by :mod:`sandbox.search`."""

    tokens: tuple[TokenClause, ...] = ()
    updated: tuple[tuple[str, str], ...] = ()
    """(operator, ISO bound) pairs on last_updated; operators '>=' and '<' only."""
    ids: tuple[str, ...] | None = None
    count: int | None = None
    offset: int = 0


@dataclass(frozen=True)
class Version:
    rtype: str
    id: str
    version: int
    last_updated: str
    deleted: bool
    body: Json


@dataclass(frozen=True)
class Current:
    version: int
    deleted: bool
    held: bool


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return secrets.token_hex(6)


def _reference(ref: Any) -> str | None:
    """'Type/id' of a literal reference (relative or absolute), else None."""
    if not isinstance(ref, dict) or not isinstance(ref.get("reference"), str):
        return None
    parts = ref["reference"].split("?")[0].rstrip("/").split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2][:1].isupper():
        return f"{parts[-2]}/{parts[-1]}"
    return None


def _codings(concept: Any) -> Iterator[Token]:
    if isinstance(concept, str):
        yield ("", "", concept)
    elif isinstance(concept, dict):
        for coding in concept.get("coding") or []:
            if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                system = coding.get("system")
                yield ("", system if isinstance(system, str) else "", coding["code"])


def extract_tokens(body: Json) -> list[Token]:
    """(param, system, value) tokens indexed for search."""
    tokens: set[Token] = set()
    identifiers = body.get("identifier")
    for ident in identifiers if isinstance(identifiers, list) else []:
        if isinstance(ident, dict) and isinstance(ident.get("value"), str):
            system = ident.get("system")
            tokens.add(("identifier", system if isinstance(system, str) else "", ident["value"]))
    for field in ("subject", "patient"):
        ref = _reference(body.get(field))
        if ref is None:
            continue
        if field == "subject":
            tokens.add(("subject", "", ref))
        if ref.startswith("Patient/"):
            tokens.add(("patient", "", ref))
    encounters = [body.get("encounter")]
    context = body.get("context")
    if isinstance(context, dict):
        enc = context.get("encounter")
        encounters += enc if isinstance(enc, list) else [enc]
    for enc in encounters:
        if (ref := _reference(enc)) is not None:
            tokens.add(("encounter", "", ref))
    for _, system, code in _codings(body.get("code")):
        tokens.add(("code", system, code))
    category = body.get("category")
    for concept in category if isinstance(category, list) else [category]:
        for _, system, code in _codings(concept):
            tokens.add(("category", system, code))
    meta = body.get("meta")
    if isinstance(meta, dict):
        for tag in meta.get("tag") or []:
            if isinstance(tag, dict) and isinstance(tag.get("code"), str):
                system = tag.get("system")
                tokens.add(("_tag", system if isinstance(system, str) else "", tag["code"]))
    return sorted(tokens)


class Tx:
    """Operations inside one :meth:`Store.tx` block (the caller holds the lock)."""

    def __init__(self, conn: sqlite3.Connection, tenant: str) -> None:
        self._conn = conn
        self.tenant = tenant

    # -- reads -------------------------------------------------------------

    def current(self, rtype: str, rid: str) -> Current | None:
        row = self._conn.execute(
            "SELECT version, deleted, indexed_at IS NULL FROM resource_current"
            " WHERE tenant=? AND type=? AND id=?",
            (self.tenant, rtype, rid),
        ).fetchone()
        return None if row is None else Current(int(row[0]), bool(row[1]), bool(row[2]))

    def read(self, rtype: str, rid: str, version: int | None = None) -> Version | None:
        """Current version (or ``version``) of a resource, tombstones included."""
        if version is None:
            cur = self.current(rtype, rid)
            if cur is None:
                return None
            version = cur.version
        row = self._conn.execute(
            "SELECT version, last_updated, deleted, body FROM resource_versions"
            " WHERE tenant=? AND type=? AND id=? AND version=?",
            (self.tenant, rtype, rid, version),
        ).fetchone()
        if row is None:
            return None
        return Version(rtype, rid, int(row[0]), row[1], bool(row[2]), json.loads(row[3]))

    def history(self, rtype: str, rid: str) -> list[Version]:
        """All versions of a resource, newest first."""
        rows = self._conn.execute(
            "SELECT version, last_updated, deleted, body FROM resource_versions"
            " WHERE tenant=? AND type=? AND id=? ORDER BY version DESC",
            (self.tenant, rtype, rid),
        ).fetchall()
        return [Version(rtype, rid, int(r[0]), r[1], bool(r[2]), json.loads(r[3])) for r in rows]

    def search(self, rtype: str, query: Query, now: float) -> tuple[int, list[Version]]:
        """(total, page) of current, non-deleted resources visible to search at ``now``."""
        where = (
            " WHERE c.tenant=? AND c.type=? AND c.deleted=0"
            " AND c.indexed_at IS NOT NULL AND c.indexed_at<=?"
        )
        args: list[Any] = [self.tenant, rtype, now]
        for clause in query.tokens:
            sql, clause_args = _token_sql(clause, self.tenant, rtype)
            where += sql
            args += clause_args
        for op, bound in query.updated:
            assert op in (">=", "<")
            where += f" AND c.last_updated {op} ?"
            args.append(bound)
        if query.ids is not None:
            where += f" AND c.id IN ({','.join('?' * len(query.ids))})"
            args.extend(query.ids)
        (total,) = self._conn.execute(
            "SELECT COUNT(*) FROM resource_current c" + where, args
        ).fetchone()
        limit = -1 if query.count is None else query.count
        rows = self._conn.execute(
            "SELECT c.id, c.version, c.last_updated, v.body FROM resource_current c"
            " JOIN resource_versions v ON v.tenant=c.tenant AND v.type=c.type AND v.id=c.id"
            # ties within one millisecond keep write order (the version row's rowid): paging
            # must be stable and match the order resources were written in
            " AND v.version=c.version"
            + where
            + " ORDER BY c.last_updated, v.rowid LIMIT ? OFFSET ?",
            [*args, limit, query.offset],
        ).fetchall()
        page = [Version(rtype, r[0], int(r[1]), r[2], False, json.loads(r[3])) for r in rows]
        return int(total), page

    # -- writes ------------------------------------------------------------

    def new_id(self, rtype: str) -> str:
        rid = new_id()
        while self.current(rtype, rid) is not None:
            rid = new_id()
        return rid

    def write(
        self,
        rtype: str,
        rid: str,
        body: Json | None,
        *,
        visible_at: float,
        hold: bool = False,
    ) -> Version:
        """Store the next version of ``rid`` (``body=None``: a deletion tombstone).

        ``visible_at`` is when search starts to see it; ``hold`` keeps it out of
        search until :meth:`review` (a held resource stays held across updates).
        """
        cur = self.current(rtype, rid)
        version = 1 if cur is None else cur.version + 1
        held = hold or (cur is not None and cur.held)
        stamp = now_iso()
        deleted = body is None
        stored: Json = {"resourceType": rtype} if body is None else dict(body)
        stored["id"] = rid
        meta = stored.get("meta")
        kept = {
            k: v
            for k, v in (meta.items() if isinstance(meta, dict) else ())
            if k not in ("versionId", "lastUpdated")
        }
        stored["meta"] = {"versionId": str(version), "lastUpdated": stamp, **kept}
        self._conn.execute(
            "INSERT INTO resource_versions VALUES (?,?,?,?,?,?,?)",
            (self.tenant, rtype, rid, version, stamp, int(deleted), json.dumps(stored)),
        )
        self._conn.execute(
            "INSERT OR REPLACE INTO resource_current VALUES (?,?,?,?,?,?,?)",
            (self.tenant, rtype, rid, version, stamp, int(deleted), None if held else visible_at),
        )
        if cur is not None:
            self._conn.execute(
                "DELETE FROM resource_tokens WHERE tenant=? AND type=? AND id=?",
                (self.tenant, rtype, rid),
            )
        if not deleted:
            self._conn.executemany(
                "INSERT INTO resource_tokens VALUES (?,?,?,?,?,?)",
                [(self.tenant, rtype, rid, p, s, v) for p, s, v in extract_tokens(stored)],
            )
        return Version(rtype, rid, version, stamp, deleted, stored)

    def review(self, rtype: str, rid: str, now: float) -> bool:
        """Release a held resource to search; False if it does not exist."""
        cur = self.current(rtype, rid)
        if cur is None:
            return False
        self._conn.execute(
            "UPDATE resource_current SET indexed_at=? WHERE tenant=? AND type=? AND id=?"
            " AND indexed_at IS NULL",
            (now, self.tenant, rtype, rid),
        )
        return True


def _token_sql(clause: TokenClause, tenant: str, rtype: str) -> tuple[str, list[Any]]:
    """SQL (``AND c.id IN (...)``) and arguments for one OR-ed token criterion. The subquery
    names the tenant and type as values, not as the outer row's columns: a correlated one is
    evaluated again for every row (a search of N resources cost N scans of the tokens)."""
    alts: list[str] = []
    args: list[Any] = [tenant, rtype, clause.param]
    for alt in clause.alternatives:
        conds: list[str] = []
        if alt.system is not None:
            conds.append("t.system=?")
            args.append(alt.system)
        if alt.value is not None:
            column = "substr(t.value, instr(t.value, '/') + 1)" if alt.id_only else "t.value"
            conds.append(f"{column}=?")
            args.append(alt.value)
        alts.append("(" + (" AND ".join(conds) or "1") + ")")
    sql = (
        " AND c.id IN (SELECT t.id FROM resource_tokens t WHERE t.tenant=?"
        f" AND t.type=? AND t.param=? AND ({' OR '.join(alts)}))"
    )
    return sql, args


class Store:
    """Versioned resource store over one SQLite file."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(SCHEMA)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            exists = self._conn.execute(
                "SELECT 1 FROM sqlite_master WHERE name='resource_current'"
            ).fetchone()
            if exists is None:
                for stmt in CURRENT_SCHEMA.split(";"):
                    if stmt.strip():
                        self._conn.execute(stmt)
            self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def tx(self, tenant: str, write: bool = True) -> Iterator[Tx]:
        """A transaction for ``tenant``: committed on exit, rolled back on an exception."""
        with self._lock:
            if not write:
                yield Tx(self._conn, tenant)
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._conn, tenant)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def reset(self, tenant: str | None = None) -> None:
        """Delete every resource (of ``tenant``, or of all tenants)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            for table in ("resource_versions", "resource_tokens", "resource_current"):
                if tenant is None:
                    self._conn.execute(f"DELETE FROM {table}")
                else:
                    self._conn.execute(f"DELETE FROM {table} WHERE tenant=?", (tenant,))
            self._conn.execute("COMMIT")
