"""The audit ledger's tables and the guards the database itself keeps (activities/audit_ledger.py).

Records: no UPDATE, no DELETE, and no INSERT where a record with the same number or entry key
exists. The last one is what stops SQLite's ``INSERT OR REPLACE`` (and ``REPLACE INTO``): REPLACE
deletes the old row *without* firing DELETE triggers (unless ``recursive_triggers`` is on), but a
BEFORE INSERT trigger fires before any conflict is resolved. PostgreSQL has no REPLACE, its
``ON CONFLICT DO UPDATE`` is an UPDATE, and TRUNCATE (which row triggers do not see) is refused by
statement triggers. Heads: never deleted, never replaced, only moved forward to a record that
exists with that seal.

Whoever owns the tables can still drop these guards: that is what the keyed chain and the
checkpoints outside the database are for, and on PostgreSQL the worker does not own them
(deploy/postgres/audit-roles.sql, ``writeback audit install``).
"""

from __future__ import annotations

from activities.write_records import POSTGRES_GRANTS as RECORDS_GRANTS
from activities.write_records import SCHEMA as RECORDS_SCHEMA

APPEND_ONLY = "the audit ledger is append-only"

SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit_records (
    tenant TEXT NOT NULL, seq INTEGER NOT NULL, entry_key TEXT NOT NULL, body TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL, key_id TEXT,
    PRIMARY KEY (tenant, seq), UNIQUE (tenant, entry_key)
);
CREATE TABLE IF NOT EXISTS audit_heads (
    tenant TEXT PRIMARY KEY, seq INTEGER NOT NULL, hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_records_no_update BEFORE UPDATE ON audit_records
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END;
CREATE TRIGGER IF NOT EXISTS audit_records_no_delete BEFORE DELETE ON audit_records
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END;
CREATE TRIGGER IF NOT EXISTS audit_records_no_replace BEFORE INSERT ON audit_records
WHEN EXISTS (
    SELECT 1 FROM audit_records
    WHERE tenant = NEW.tenant AND (seq = NEW.seq OR entry_key = NEW.entry_key)
)
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}: the record exists'); END;
CREATE TRIGGER IF NOT EXISTS audit_heads_no_delete BEFORE DELETE ON audit_heads
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END;
CREATE TRIGGER IF NOT EXISTS audit_heads_no_replace BEFORE INSERT ON audit_heads
WHEN NEW.seq != 0 OR EXISTS (SELECT 1 FROM audit_heads WHERE tenant = NEW.tenant)
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}: a head is created once, at 0'); END;
CREATE TRIGGER IF NOT EXISTS audit_heads_forward BEFORE UPDATE ON audit_heads
WHEN NEW.tenant != OLD.tenant OR NEW.seq <= OLD.seq OR NOT EXISTS (
    SELECT 1 FROM audit_records WHERE tenant = NEW.tenant AND seq = NEW.seq AND hash = NEW.hash
)
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}: a head only moves forward to its last record'); END;
"""

#: The newest guard: where it exists, the schema is installed (and the worker needs no DDL).
POSTGRES_MARKER = "audit_heads_forward"

POSTGRES_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit_records (
    tenant TEXT NOT NULL, seq BIGINT NOT NULL, entry_key TEXT NOT NULL, body TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL, key_id TEXT,
    PRIMARY KEY (tenant, seq), UNIQUE (tenant, entry_key)
);
ALTER TABLE audit_records ADD COLUMN IF NOT EXISTS key_id TEXT;
CREATE TABLE IF NOT EXISTS audit_heads (
    tenant TEXT PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END $$;
CREATE OR REPLACE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON audit_records
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads
FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE TRIGGER audit_heads_no_truncate BEFORE TRUNCATE ON audit_heads
FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE OR REPLACE FUNCTION audit_head_forward() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.tenant <> OLD.tenant OR NEW.seq <= OLD.seq OR NOT EXISTS (
        SELECT 1 FROM audit_records r
        WHERE r.tenant = NEW.tenant AND r.seq = NEW.seq AND r.hash = NEW.hash
    ) THEN
        RAISE EXCEPTION '{APPEND_ONLY}: a head only moves forward to its last record';
    END IF;
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER {POSTGRES_MARKER} BEFORE UPDATE ON audit_heads
FOR EACH ROW EXECUTE FUNCTION audit_head_forward();
"""

#: What the worker's role may do (``writeback audit install``): append, read, move heads forward.
POSTGRES_GRANTS = """
GRANT USAGE ON SCHEMA {schema} TO {writer}, {reader};
GRANT SELECT, INSERT ON audit_records TO {writer};
GRANT SELECT, INSERT, UPDATE (seq, hash) ON audit_heads TO {writer};
GRANT SELECT ON audit_records, audit_heads TO {reader};
"""


def install_postgres(
    url: str, owner: str | None, schema: str, writer: str | None, reader: str | None
) -> None:
    """``writeback audit install``: the tables and guards, created as ``owner`` in ``schema``,
    and the writer's and reader's grants (deploy/postgres/audit-roles.sql made the roles)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        if owner:
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(owner)))
        conn.execute(sql.SQL("SET LOCAL search_path = {}").format(sql.Identifier(schema)))
        conn.execute("SELECT pg_advisory_xact_lock(7710501)")
        conn.execute(POSTGRES_SCHEMA + RECORDS_SCHEMA)
        if writer and reader:
            grants = (POSTGRES_GRANTS + RECORDS_GRANTS).format(
                schema=sql.Identifier(schema).as_string(conn),
                writer=sql.Identifier(writer).as_string(conn),
                reader=sql.Identifier(reader).as_string(conn),
            )
            conn.execute(grants)
