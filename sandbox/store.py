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
        param  TEXT,   -- 'identifier' or 'patient'
        system TEXT,   -- identifier.system ('' when absent); '' for 'patient'
        value  TEXT)   -- identifier.value, or 'Patient/{id}' for 'patient'

``resource_tokens`` holds the searchable tokens of the *current* version of
each non-deleted resource only. The current version of a resource is the row
with the highest ``version``.

One connection is shared by all threads and guarded by a lock; every write runs
in a ``BEGIN IMMEDIATE`` transaction, so a conditional create (search + insert)
is atomic even if another process opens the same file.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

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

Json = dict[str, Any]


@dataclass(frozen=True)
class Criterion:
    """One AND-ed search criterion; ``None`` system/value means 'any'."""

    param: Literal["identifier", "patient"]
    system: str | None
    value: str | None


@dataclass(frozen=True)
class Version:
    id: str
    version: int
    last_updated: str
    deleted: bool
    body: Json


@dataclass(frozen=True)
class CreateResult:
    """``created`` with the new version, or the existing ``matches`` (no write)."""

    created: Version | None
    matches: list[Version]


UpdateStatus = Literal["ok", "not_found", "conflict"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    return secrets.token_hex(6)


def extract_tokens(body: Json) -> list[tuple[str, str, str]]:
    """(param, system, value) tokens indexed for search."""
    tokens: list[tuple[str, str, str]] = []
    identifiers = body.get("identifier")
    if isinstance(identifiers, list):
        for ident in identifiers:
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                system = ident.get("system")
                tokens.append(
                    ("identifier", system if isinstance(system, str) else "", ident["value"])
                )
    for field in ("subject", "patient"):
        ref = body.get(field)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            parts = ref["reference"].rstrip("/").split("/")
            if len(parts) >= 2 and parts[-2] == "Patient":
                tokens.append(("patient", "", f"Patient/{parts[-1]}"))
    return tokens


class Store:
    """Thread-safe versioned resource store."""

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- reads -------------------------------------------------------------

    def _row_to_version(self, row: Sequence[Any]) -> Version:
        return Version(row[0], int(row[1]), row[2], bool(row[3]), json.loads(row[4]))

    def read(self, tenant: str, rtype: str, rid: str, version: int | None = None) -> Version | None:
        """Current version (or ``version``) of a resource, tombstones included."""
        sql = (
            "SELECT id, version, last_updated, deleted, body FROM resource_versions"
            " WHERE tenant=? AND type=? AND id=?"
        )
        args: list[Any] = [tenant, rtype, rid]
        if version is not None:
            sql += " AND version=?"
            args.append(version)
        sql += " ORDER BY version DESC LIMIT 1"
        with self._lock:
            row = self._conn.execute(sql, args).fetchone()
        return None if row is None else self._row_to_version(row)

    def _search_locked(
        self, tenant: str, rtype: str, criteria: Sequence[Criterion]
    ) -> list[Version]:
        sql = (
            "SELECT v.id, v.version, v.last_updated, v.deleted, v.body FROM resource_versions v"
            " WHERE v.tenant=? AND v.type=? AND v.deleted=0 AND v.version=("
            "SELECT MAX(m.version) FROM resource_versions m"
            " WHERE m.tenant=v.tenant AND m.type=v.type AND m.id=v.id)"
        )
        args: list[Any] = [tenant, rtype]
        for c in criteria:
            sql += (
                " AND EXISTS (SELECT 1 FROM resource_tokens t WHERE t.tenant=v.tenant"
                " AND t.type=v.type AND t.id=v.id AND t.param=?"
            )
            args.append(c.param)
            if c.system is not None:
                sql += " AND t.system=?"
                args.append(c.system)
            if c.value is not None:
                sql += " AND t.value=?"
                args.append(c.value)
            sql += ")"
        sql += " ORDER BY v.last_updated, v.id"
        return [self._row_to_version(r) for r in self._conn.execute(sql, args).fetchall()]

    def search(self, tenant: str, rtype: str, criteria: Sequence[Criterion]) -> list[Version]:
        with self._lock:
            return self._search_locked(tenant, rtype, criteria)

    # -- writes ------------------------------------------------------------

    def _write_locked(
        self, tenant: str, rtype: str, rid: str, version: int, body: Json | None
    ) -> Version:
        """Insert one version (``body=None`` means tombstone) and refresh tokens."""
        stamp = now_iso()
        deleted = body is None
        stored: Json = {"resourceType": rtype, "id": rid} if body is None else dict(body)
        stored["id"] = rid
        stored["meta"] = {"versionId": str(version), "lastUpdated": stamp}
        self._conn.execute(
            "INSERT INTO resource_versions VALUES (?,?,?,?,?,?,?)",
            (tenant, rtype, rid, version, stamp, int(deleted), json.dumps(stored)),
        )
        self._conn.execute(
            "DELETE FROM resource_tokens WHERE tenant=? AND type=? AND id=?", (tenant, rtype, rid)
        )
        if not deleted:
            self._conn.executemany(
                "INSERT INTO resource_tokens VALUES (?,?,?,?,?,?)",
                [(tenant, rtype, rid, p, s, v) for p, s, v in extract_tokens(stored)],
            )
        return Version(rid, version, stamp, deleted, stored)

    def _current_version_locked(self, tenant: str, rtype: str, rid: str) -> int | None:
        row = self._conn.execute(
            "SELECT MAX(version) FROM resource_versions WHERE tenant=? AND type=? AND id=?",
            (tenant, rtype, rid),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def create(
        self, tenant: str, rtype: str, body: Json, if_none_exist: Sequence[Criterion] | None = None
    ) -> CreateResult:
        """Create a resource; with ``if_none_exist`` only when nothing matches.

        The search and insert share one ``BEGIN IMMEDIATE`` transaction under the
        lock, so concurrent conditional creates cannot both insert.
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if if_none_exist is not None:
                    matches = self._search_locked(tenant, rtype, if_none_exist)
                    if matches:
                        self._conn.execute("COMMIT")
                        return CreateResult(None, matches)
                rid = new_id()
                while self._current_version_locked(tenant, rtype, rid) is not None:
                    rid = new_id()
                created = self._write_locked(tenant, rtype, rid, 1, body)
                self._conn.execute("COMMIT")
                return CreateResult(created, [])
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def update(
        self, tenant: str, rtype: str, rid: str, body: Json | None, if_match: int | None
    ) -> tuple[UpdateStatus, Version | None]:
        """New version of an existing resource (``body=None`` deletes it).

        Returns ``conflict`` with the current version when ``if_match`` is stale.
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                current = self._current_version_locked(tenant, rtype, rid)
                if current is None:
                    self._conn.execute("COMMIT")
                    return "not_found", None
                if if_match is not None and if_match != current:
                    self._conn.execute("COMMIT")
                    return "conflict", None
                written = self._write_locked(tenant, rtype, rid, current + 1, body)
                self._conn.execute("COMMIT")
                return "ok", written
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
