"""Issue #17, finding 3: the audit ledger cannot be edited without detection. Each test is an
attack by someone who can write to the ledger's database (its file, or a PostgreSQL login) but
holds neither the ledger key nor the checkpoint directory, and each ends with what
``writeback audit verify`` says about it.

The worker's ledger is opened the way the worker opens it (``workers.audit_cli.shared_ledger``:
key and checkpoint directory from the environment, here one of each per test).
"""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from support.cli import run_cli
from support.postgres import postgres_server

from activities.audit_ledger import AuditEvent, AuditLedger
from workers.audit_cli import shared_ledger

ROOT = Path(__file__).resolve().parents[2]
ROLES_SQL = ROOT / "deploy" / "postgres" / "audit-roles.sql"


@pytest.fixture(autouse=True)
def ledger_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This test's ledger key and checkpoint directory (out of the attacker's reach); a
    checkpoint after every append."""
    monkeypatch.setenv("WRITEBACK_AUDIT_KEY_FILE", str(tmp_path / "secrets" / "audit-key.json"))
    monkeypatch.setenv("WRITEBACK_AUDIT_CHECKPOINTS", str(tmp_path / "anchors"))
    monkeypatch.setenv("WRITEBACK_AUDIT_CHECKPOINT_EVERY", "1")


def event(n: int, tenant: str = "acme") -> AuditEvent:
    return AuditEvent(
        entry_key=f"wb:{tenant}:k{n}/t{n}",
        tenant=tenant,
        correlation_id=f"wb:{tenant}:k{n}",
        kind="transition",
        at=datetime(2026, 11, 25, 9, 0, n, tzinfo=UTC),
        requested_by="nursing-app",
        state="verified",
        outcome="verified",
    )


def filled(location: str) -> AuditLedger:
    ledger = shared_ledger(location)
    for n in range(1, 7):  # one hand-over per record, as writes do
        ledger.append([event(n)])
    ledger.append([event(n, "beta") for n in range(1, 4)])
    return ledger


def verify(location: str) -> tuple[int, str]:
    done = run_cli("audit", "verify", "--db", location)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, done.stdout


def unkeyed(tenant: str, seq: int, prev: str, body: str) -> str:
    """The chain hash anyone can compute (SHA-256 of the record's parts, no key)."""
    return hashlib.sha256(f"{tenant}\n{seq}\n{prev}\n{body}".encode()).hexdigest()


def lift_guards(conn: sqlite3.Connection) -> None:
    """What the owner of the file can do: drop every trigger."""
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')


def rows(conn: sqlite3.Connection, tenant: str) -> list[tuple[int, str, str, str, str]]:
    return conn.execute(
        "SELECT seq, entry_key, body, prev_hash, hash FROM audit_records WHERE tenant = ? "
        "ORDER BY seq",
        (tenant,),
    ).fetchall()


@pytest.fixture
def sqlite_ledger(tmp_path: Path) -> Iterator[str]:
    location = str(tmp_path / "db" / "audit.db")
    filled(location)
    assert verify(location)[0] == 0
    yield location
    shared_ledger(location).close()


# --- SQLite -------------------------------------------------------------------------------------


def test_insert_or_replace_of_a_record_is_refused(sqlite_ledger: str) -> None:
    """REPLACE deletes the old row without firing a DELETE trigger: an edit in one statement."""
    with sqlite3.connect(sqlite_ledger) as conn:
        seq, key, body, prev, _ = rows(conn, "acme")[2]
        edited = body.replace("nursing-app", "other-app")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(
                "INSERT OR REPLACE INTO audit_records (tenant, seq, entry_key, body, prev_hash, "
                "hash) VALUES ('acme', ?, ?, ?, ?, ?)",
                (seq, key, edited, prev, unkeyed("acme", seq, prev, edited)),
            )
    assert verify(sqlite_ledger)[0] == 0


def test_an_update_that_moves_a_head_back_is_refused(sqlite_ledger: str) -> None:
    """UPDATE of the head, to hide records at the end (the records themselves refuse UPDATE)."""
    with sqlite3.connect(sqlite_ledger) as conn:
        _, _, _, prev, _ = rows(conn, "acme")[5]
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE audit_heads SET seq = 5, hash = ? WHERE tenant = 'acme'", (prev,))
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(
                "INSERT OR REPLACE INTO audit_heads (tenant, seq, hash) VALUES ('acme', 5, ?)",
                (prev,),
            )
    assert verify(sqlite_ledger)[0] == 0


def test_deleting_a_head_is_refused_and_a_deleted_head_is_detected(sqlite_ledger: str) -> None:
    with sqlite3.connect(sqlite_ledger) as conn:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM audit_heads WHERE tenant = 'acme'")
        lift_guards(conn)
        conn.execute("DELETE FROM audit_heads WHERE tenant = 'acme'")
    code, out = verify(sqlite_ledger)
    assert code == 1, out
    assert "TAMPERED  acme" in out  # not skipped: the tenants come from the records


def test_truncating_the_tail_and_its_head_is_caught_by_the_checkpoint(sqlite_ledger: str) -> None:
    """The last two records deleted and the head set to the new last one: the chain that is
    left is intact, the checkpoint outside the database says it was longer."""
    with sqlite3.connect(sqlite_ledger) as conn:
        lift_guards(conn)
        conn.execute("DELETE FROM audit_records WHERE tenant = 'acme' AND seq >= 5")
        new_last = rows(conn, "acme")[-1][4]
        conn.execute("UPDATE audit_heads SET seq = 4, hash = ? WHERE tenant = 'acme'", (new_last,))
    code, out = verify(sqlite_ledger)
    assert code == 1, out
    assert "TAMPERED  acme" in out and "checkpoint" in out
    assert "ok        beta" in out


@pytest.mark.parametrize("disguise", ["as keyed", "as records from before the key"])
def test_recomputing_the_chain_without_the_key_is_caught(sqlite_ledger: str, disguise: str) -> None:
    """Record 3 edited, then every hash from 3 on recomputed and the head moved along: all an
    attacker without the key can do (an unkeyed chain would verify)."""
    with sqlite3.connect(sqlite_ledger) as conn:
        lift_guards(conn)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(audit_records)")}
        prev = rows(conn, "acme")[1][4]
        for seq, _, body, _, _ in rows(conn, "acme")[2:]:
            if seq == 3:
                body = body.replace("nursing-app", "other-app")
            digest = unkeyed("acme", seq, prev, body)
            conn.execute(
                "UPDATE audit_records SET body = ?, prev_hash = ?, hash = ? "
                "WHERE tenant = 'acme' AND seq = ?",
                (body, prev, digest, seq),
            )
            if disguise != "as keyed" and "key_id" in columns:
                conn.execute("UPDATE audit_records SET key_id = NULL WHERE tenant = 'acme'")
            prev = digest
        conn.execute("UPDATE audit_heads SET hash = ? WHERE tenant = 'acme'", (prev,))
    code, out = verify(sqlite_ledger)
    assert code == 1, out
    assert "TAMPERED  acme: first bad record" in out


# --- PostgreSQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with postgres_server(tmp_path_factory.mktemp("pg")) as url:
        yield url


def in_schema(url: str, schema: str) -> str:
    return f"{url}&options=-csearch_path%3D{schema}"


def test_truncate_is_refused_on_postgresql(postgres_admin: str) -> None:
    """Row triggers do not fire on TRUNCATE: even the tables' owner must not empty them."""
    schema = f"t{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]
    location = in_schema(postgres_admin, schema)
    filled(location)
    for table in ("audit_records", "audit_heads"):
        with (
            psycopg.connect(location, autocommit=True) as conn,
            pytest.raises(psycopg.Error, match="append-only"),
        ):
            conn.execute(f"TRUNCATE {table}")  # type: ignore[arg-type]
    assert verify(location)[0] == 0
    shared_ledger(location).close()


def test_the_worker_role_can_only_append_on_postgresql(postgres_admin: str) -> None:
    """deploy/postgres/audit-roles.sql: the worker logs in as a role that may INSERT and SELECT,
    move its heads forward, and nothing else: not UPDATE, DELETE, TRUNCATE, nor lift a trigger
    (it does not own the tables)."""
    database = f"ledger_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {database}")  # type: ignore[arg-type]
    admin = postgres_admin.replace("/postgres?", f"/{database}?")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(ROLES_SQL.read_text())  # type: ignore[arg-type]
        conn.execute("ALTER ROLE writeback_audit_writer PASSWORD 'test-only'")
    installed = run_cli("audit", "install", "--db", admin)
    assert installed.returncode == 0, installed.stderr
    user = admin.split("://", 1)[1].split("@", 1)[0]
    writer = admin.replace(f"://{user}@", "://writeback_audit_writer:test-only@", 1)
    filled(writer)  # the worker appends as the writer role
    attacks = [
        "UPDATE audit.audit_records SET body = body || ' '",
        "DELETE FROM audit.audit_records WHERE seq = 6",
        "DELETE FROM audit.audit_heads",
        "TRUNCATE audit.audit_records",
        "ALTER TABLE audit.audit_records DISABLE TRIGGER USER",
        "DROP TABLE audit.audit_heads",
    ]
    for attack in attacks:
        with (
            psycopg.connect(writer, autocommit=True) as conn,
            pytest.raises(psycopg.Error, match=r"permission denied|must be owner|append-only"),
        ):
            conn.execute(attack)  # type: ignore[arg-type]
    code, out = verify(writer)
    assert code == 0, out
    assert "ok        acme: 6 records" in out
    shared_ledger(writer).close()
