"""Where the identity crosswalk lives: internal id -> tenant id, per tenant and resource type,
with provenance (how the mapping was learned, when, by which lookup).

SQLite by default (a file under the state directory); PostgreSQL when the location is a
``postgresql://`` URI (many workers, one crosswalk). Both keep the same single table.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

CROSSWALK_URL_ENV = "WRITEBACK_CROSSWALK_URL"

_COLUMNS = "tenant, resource_type, internal_id, tenant_id, source, learned_at, lookup"
_CREATE = """
CREATE TABLE IF NOT EXISTS crosswalk (
    tenant TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    internal_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    source TEXT NOT NULL,
    learned_at TEXT NOT NULL,
    lookup TEXT NOT NULL,
    PRIMARY KEY (tenant, resource_type, internal_id)
)"""


@dataclass(frozen=True)
class Mapping:
    """One internal id's identity in one tenant. ``source`` is how it was learned
    (``identifier-search``, ``manual``, ``import``); ``lookup`` the query that found it."""

    tenant: str
    resource_type: str
    internal_id: str
    tenant_id: str
    source: str
    learned_at: datetime
    lookup: str

    def row(self) -> tuple[str, ...]:
        return (
            self.tenant,
            self.resource_type,
            self.internal_id,
            self.tenant_id,
            self.source,
            self.learned_at.isoformat(),
            self.lookup,
        )

    @classmethod
    def from_row(cls, row: Any) -> Mapping:
        tenant, rtype, internal, tenant_id, source, learned_at, lookup = row
        return cls(
            tenant, rtype, internal, tenant_id, source, datetime.fromisoformat(learned_at), lookup
        )


class CrosswalkStore(Protocol):
    def get(self, tenant: str, resource_type: str, internal_id: str) -> Mapping | None: ...

    def put(self, mapping: Mapping) -> None:
        """Insert or replace the mapping of ``(tenant, resource_type, internal_id)``."""

    def mappings(self, tenant: str) -> list[Mapping]: ...


class _SqlCrosswalk:
    """The queries, shared by both databases (they differ only in the parameter marker)."""

    _MARK = "?"

    def _run(self, sql: str, params: tuple[str, ...]) -> list[Any]:
        raise NotImplementedError

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self._MARK)

    def get(self, tenant: str, resource_type: str, internal_id: str) -> Mapping | None:
        rows = self._run(
            self._sql(
                f"SELECT {_COLUMNS} FROM crosswalk "
                "WHERE tenant = ? AND resource_type = ? AND internal_id = ?"
            ),
            (tenant, resource_type, internal_id),
        )
        return Mapping.from_row(rows[0]) if rows else None

    def put(self, mapping: Mapping) -> None:
        self._run(
            self._sql(
                f"INSERT INTO crosswalk ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, resource_type, internal_id) DO UPDATE SET "
                "tenant_id = excluded.tenant_id, source = excluded.source, "
                "learned_at = excluded.learned_at, lookup = excluded.lookup"
            ),
            mapping.row(),
        )

    def mappings(self, tenant: str) -> list[Mapping]:
        rows = self._run(
            self._sql(
                f"SELECT {_COLUMNS} FROM crosswalk WHERE tenant = ? "
                "ORDER BY resource_type, internal_id"
            ),
            (tenant,),
        )
        return [Mapping.from_row(row) for row in rows]


class SqliteCrosswalk(_SqlCrosswalk):
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._run(_CREATE, ())

    def _run(self, sql: str, params: tuple[str, ...]) -> list[Any]:
        with closing(sqlite3.connect(self._path, timeout=30)) as conn, conn:
            conn.execute("PRAGMA journal_mode=WAL")
            return conn.execute(sql, params).fetchall()


class PostgresCrosswalk(_SqlCrosswalk):
    _MARK = "%s"

    def __init__(self, uri: str) -> None:
        import psycopg  # only deployments that configure PostgreSQL load the driver

        self._psycopg = psycopg
        self._uri = uri
        self._run(_CREATE, ())

    def _run(self, sql: str, params: tuple[str, ...]) -> list[Any]:
        with self._psycopg.connect(self._uri) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []


def open_crosswalk(location: str) -> CrosswalkStore:
    """``postgresql://…`` (or ``postgres://…``) opens PostgreSQL; anything else is a SQLite file."""
    if location.startswith(("postgresql://", "postgres://")):
        return PostgresCrosswalk(location)
    return SqliteCrosswalk(Path(location))
